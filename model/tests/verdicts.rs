//! The verdict over both sides and the source's fate, as the reports print them: names,
//! parsing, and the reason's words for a source left where nobody moves it on.

use vmemsim_model::migration::outcome::{Outcome, Stage};
use vmemsim_model::migration::source_fate::{MigrationStatus, Reply, RunState, SourceFate};
use vmemsim_model::migration::verdict::{judge, Judgement, Verdict};

#[test]
fn verdicts_name_parse_and_print_alike() {
    let names: Vec<&str> = Verdict::ALL.iter().map(|v| v.name()).collect();
    assert_eq!(names, ["safe", "recoverable", "vm-lost", "latent-crash"]);
    for v in Verdict::ALL {
        assert_eq!(Verdict::parse(v.name()), Some(v));
        assert_eq!(v.to_string(), v.name());
    }
    assert_eq!(Verdict::parse("lost"), None);
    let j = Judgement { verdict: Verdict::VmLost, reason: "why".into() };
    assert_eq!(j.to_string(), "vm-lost: why");
}

fn stuck() -> SourceFate {
    SourceFate {
        status: MigrationStatus::Device,
        runstate: RunState::FinishMigrate,
        error: Some("postcopy_start failed".into()),
        lines: vec!["postcopy_start: failed".into()],
        cancel: Reply::Ok,
        after_cancel: (MigrationStatus::Cancelling, RunState::FinishMigrate),
        cont: Reply::Error("Migration is not finalized yet".into()),
    }
}

/// A source that `migrate_cancel` moves from `device` to `cancelling` and no further: the
/// reason names both states, and the report prints the move and the source's stderr.
#[test]
fn a_stuck_source_is_described_with_where_cancel_left_it() {
    let failed = Outcome::Failed { stage: Stage::EarlySection("0000:00:03.0/virtio-mem-device-early".into()), lines: vec![] };
    let j = judge(&failed, &stuck(), None);
    assert_eq!(j.verdict, Verdict::VmLost);
    assert_eq!(
        j.reason,
        "the destination exited with status 1 at early section '0000:00:03.0/virtio-mem-device-early'; the source is stopped in device (migrate_cancel: ok, then cancelling; cont: error 'Migration is not finalized yet'): no side can run the guest"
    );
    assert_eq!(
        stuck().to_string(),
        "source: status device, runstate finish-migrate, error 'postcopy_start failed'; migrate_cancel: ok (then cancelling, finish-migrate); cont: error 'Migration is not finalized yet'\nsource stderr:\n  qemu-system-x86_64: postcopy_start: failed\n"
    );
    let names: Vec<&str> = [RunState::Running, RunState::Postmigrate, RunState::FinishMigrate].iter().map(|r| r.name()).collect();
    assert_eq!(names, ["running", "postmigrate", "finish-migrate"]);
    // A source that cancel leaves where it was prints no move.
    let still = SourceFate { after_cancel: (MigrationStatus::Device, RunState::FinishMigrate), lines: vec![], error: None, ..stuck() };
    assert_eq!(still.to_string(), "source: status device, runstate finish-migrate; migrate_cancel: ok; cont: error 'Migration is not finalized yet'\n");
}

/// Each way the destination ends, in the reason's first words.
#[test]
fn the_reason_starts_with_how_the_destination_ended() {
    let crashed = Outcome::Crashed { stage: Stage::RamLoad, site: vmemsim_model::migration::outcome::FaultSite { block: "b".into(), offset: vmemsim_model::Bytes(0) }, lines: vec![] };
    assert!(judge(&crashed, &stuck(), None).reason.starts_with("the destination died of SIGBUS at RAM load; "));
    let paused = Outcome::PostcopyFailed { stage: Stage::PostcopyPlacement, lines: vec![] };
    let r = judge(&paused, &stuck(), None).reason;
    assert!(r.starts_with("the destination paused (postcopy-paused): its guest waits for pages it cannot place; "), "{r}");
    assert!(r.ends_with("after memory is freed on the destination host can continue"), "{r}");
}
