//! The guest's requests on the virtio-mem queue and the device's responses
//! (include/standard-headers/linux/virtio_mem.h).

use std::fmt;

use crate::units::Gpa;

/// A request the guest driver puts on the queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// VIRTIO_MEM_REQ_PLUG (0).
    Plug { addr: Gpa, nb_blocks: u16 },
    /// VIRTIO_MEM_REQ_UNPLUG (1).
    Unplug { addr: Gpa, nb_blocks: u16 },
    /// VIRTIO_MEM_REQ_UNPLUG_ALL (2).
    UnplugAll,
    /// VIRTIO_MEM_REQ_STATE (3).
    State { addr: Gpa, nb_blocks: u16 },
}

/// The state a STATE request reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockState {
    /// VIRTIO_MEM_STATE_PLUGGED (0).
    Plugged,
    /// VIRTIO_MEM_STATE_UNPLUGGED (1).
    Unplugged,
    /// VIRTIO_MEM_STATE_MIXED (2).
    Mixed,
}

/// The device's answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    /// VIRTIO_MEM_RESP_ACK (0).
    Ack,
    /// VIRTIO_MEM_RESP_ACK (0) to a STATE request, with the state.
    AckState(BlockState),
    /// VIRTIO_MEM_RESP_NACK (1).
    Nack,
    /// VIRTIO_MEM_RESP_BUSY (2).
    Busy,
    /// VIRTIO_MEM_RESP_ERROR (3).
    Error,
}

impl Response {
    /// The `le16 type` on the wire.
    pub fn code(self) -> u16 {
        match self {
            Response::Ack | Response::AckState(_) => 0,
            Response::Nack => 1,
            Response::Busy => 2,
            Response::Error => 3,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Plug { addr, nb_blocks } => write!(f, "PLUG {addr} x{nb_blocks}"),
            Request::Unplug { addr, nb_blocks } => write!(f, "UNPLUG {addr} x{nb_blocks}"),
            Request::UnplugAll => write!(f, "UNPLUG_ALL"),
            Request::State { addr, nb_blocks } => write!(f, "STATE {addr} x{nb_blocks}"),
        }
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Ack => write!(f, "ACK"),
            Response::AckState(s) => write!(f, "ACK {s:?}"),
            Response::Nack => write!(f, "NACK"),
            Response::Busy => write!(f, "BUSY"),
            Response::Error => write!(f, "ERROR"),
        }
    }
}
