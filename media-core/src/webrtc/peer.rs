//! Drives one str0m `Rtc` (sans-IO) on the shared port: datagrams in from the peer's inbox,
//! datagrams out on the socket, timeouts from a timer. Publishers ([`super::publish`]) and
//! viewers ([`super::play`]) add what they do with media on top.
//!
//! str0m's contract: every mutation of the `Rtc` is followed by a complete drain of its output
//! (until a timeout), before the next mutation. [`PeerLink::drain`] is that drain; callers
//! mutate, then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::udp::{Datagram, RouteGuard};

/// What woke a peer up.
pub(crate) enum Wake {
    /// A datagram, fed to the `Rtc`.
    Datagram,
    /// The `Rtc`'s timer fired and was fed.
    Timer,
    /// The inbox closed (the server is gone).
    Closed,
}

/// One peer's `Rtc` and its link to the port.
pub(crate) struct PeerLink {
    pub rtc: Rtc,
    inbox: mpsc::Receiver<Datagram>,
    socket: Arc<UdpSocket>,
    /// The local candidate datagrams are taken to arrive on (the port is bound once for all).
    local: SocketAddr,
    /// When the `Rtc` next wants a timeout.
    deadline: Instant,
    /// Set when the peer's ICE connection is gone or the `Rtc` failed.
    pub ended: bool,
    _route: RouteGuard,
}

impl PeerLink {
    pub(crate) fn new(
        rtc: Rtc,
        inbox: mpsc::Receiver<Datagram>,
        socket: Arc<UdpSocket>,
        local: SocketAddr,
        route: RouteGuard,
    ) -> Self {
        Self {
            rtc,
            inbox,
            socket,
            local,
            deadline: Instant::now(),
            ended: false,
            _route: route,
        }
    }

    /// Polls the `Rtc` until it wants a timeout: sends what it transmits, hands its events to
    /// `events`. Marks the peer ended when ICE disconnects or the `Rtc` fails.
    pub(crate) fn drain(&mut self, events: &mut Vec<Event>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.deadline = at;
                    return;
                }
                Ok(Output::Transmit(transmit)) => {
                    // A full socket buffer loses the datagram, as a congested link would.
                    if self
                        .socket
                        .try_send_to(&transmit.contents, transmit.destination)
                        .is_err()
                    {
                        metrics::counter!("studio_webrtc_send_dropped_total").increment(1);
                    }
                }
                Ok(Output::Event(event)) => {
                    if event == Event::IceConnectionStateChange(IceConnectionState::Disconnected) {
                        self.ended = true;
                    }
                    events.push(event);
                }
                Err(err) => {
                    self.fail(err);
                    return;
                }
            }
        }
    }

    fn fail(&mut self, err: RtcError) {
        tracing::debug!(error = %err, "WebRTC peer failed");
        self.ended = true;
        self.rtc.disconnect();
    }

    /// Waits for the next datagram or the `Rtc`'s timer and feeds it; the caller drains next.
    /// Cancel-safe: nothing is fed unless this returns.
    pub(crate) async fn wait(&mut self) -> Wake {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::select! {
            datagram = self.inbox.recv() => match datagram {
                Some(datagram) => {
                    self.receive(datagram);
                    Wake::Datagram
                }
                None => Wake::Closed,
            },
            _ = tokio::time::sleep_until(deadline) => {
                self.feed(Input::Timeout(Instant::now()));
                Wake::Timer
            }
        }
    }

    fn receive(&mut self, datagram: Datagram) {
        let Ok(contents) = datagram.contents.as_ref().try_into() else {
            // Not STUN, DTLS, RTP or RTCP: noise on the port.
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: datagram.source,
                destination: self.local,
                contents,
            },
        );
        self.feed(input);
    }

    fn feed(&mut self, input: Input) {
        if let Err(err) = self.rtc.handle_input(input) {
            self.fail(err);
        }
    }
}
