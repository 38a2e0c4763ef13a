#![allow(dead_code)]
//! Helpers shared by the integration tests.

pub mod bytes;

use std::path::{Path, PathBuf};

/// Every scenario file under `scenarios/`, sorted.
pub fn scenario_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("scenarios/ exists") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

pub fn scenario(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(rel)
}

/// A scratch folder for this test binary's files, inside the target folder (cargo's
/// `CARGO_TARGET_TMPDIR`), so that tests leave nothing in the host's temp dir.
pub fn scratch(what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the target folder is writable");
    dir
}

/// A libvirt domain with one virtio-mem device on 2 MiB huge pages (as `virsh dumpxml`
/// prints it: PCI addresses assigned), shared by the importer tests.
pub const LIBVIRT_DOMAIN: &str = r#"<domain type='kvm'>
  <name>guest1</name>
  <maxMemory unit='KiB'>16777216</maxMemory>
  <memory unit='KiB'>4194304</memory>
  <memoryBacking>
    <hugepages>
      <page size='2048' unit='KiB'/>
    </hugepages>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='pc-q35-9.2'>hvm</type>
  </os>
  <cpu>
    <numa>
      <cell id='0' cpus='0-1' memory='2097152' unit='KiB'/>
    </numa>
  </cpu>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </controller>
    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>2097152</size>
        <node>0</node>
        <block unit='KiB'>2048</block>
        <requested unit='KiB'>1048576</requested>
      </target>
      <alias name='virtiomem0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </memory>
    <memory model='dimm'>
      <target><size unit='KiB'>524288</size><node>0</node></target>
    </memory>
  </devices>
</domain>
"#;
