//! The host's half of the conversation with the guest's PID 1, as a state machine
//! without I/O: guest messages, the user's signals and standard input go in, and what
//! to send, show or do comes out as [`Action`]s. No sockets, threads or clocks: the
//! caller passes the time, so tests drive it with scripted messages and a fake clock
//! (see the tests below), the way Firecracker tests its vsock muxer.
//!
//! What it decides: the greeting's version check and the job sent in reply; where
//! output goes; the standard input window ([`STDIN_WINDOW`] bytes unacknowledged at
//! most, a chunk that does not fit held until acknowledgements make room); which signal
//! is the job's and which ends the run ([`signal_action`]); the job's end and its
//! acknowledgement. The session around it (`super::Session`) owns the stream, QEMU,
//! the deadline and the shutdown waits.

use super::outcome::Outcome;
use std::time::{Duration, Instant};
use vm_wire::{
    GuestMsg, HostMsg, JobEnd, JobSpec, WinSize, WireError, MAGIC, STDIN_WINDOW, VERSION,
};

/// Something for the session to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this to the guest.
    Send(HostMsg),
    /// The job's standard output.
    Stdout(Vec<u8>),
    /// The job's standard error.
    Stderr(Vec<u8>),
    /// A message for the user (not job output).
    Note(String),
    /// Stop reading the runner's standard input: the job will take no more.
    StopInput,
    /// Kill the VM and end the run with this outcome.
    KillVm(Outcome),
    /// End the run with this outcome (the VM is already on its way down).
    Finish(Outcome),
}

/// What the runner's standard input brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEvent {
    /// Bytes read.
    Data(Vec<u8>),
    /// End of file.
    End,
    /// Reading failed with this error.
    Failed(String),
}

/// What the runner does with a signal the user sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    /// Pass it on to the job.
    Forward,
    /// Kill the VM and end the run.
    Kill,
}

/// Signals that ask the run to end (as opposed to SIGUSR1/2, which are the job's).
pub fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
    )
}

/// The first stop signal is the job's to handle, as on a terminal. A second one means
/// the job did not end on the first (it ignores SIGINT, or hangs): the user gets the
/// runner back. Before the guest's greeting there is no job to forward to, and a guest
/// hung at boot would otherwise hold the user until the timeout.
///
/// SIGPIPE comes from the runner's own stdout (its reader went away, as in `run-in-vm
/// CMD | head -1`): nothing more can be delivered, so the run ends as a writer killed
/// by SIGPIPE would (141), instead of running on unread until the timeout.
pub fn signal_action(sig: i32, guest_up: bool, next_stop_kills: bool) -> SignalAction {
    if sig == libc::SIGPIPE || is_stop_signal(sig) && (!guest_up || next_stop_kills) {
        SignalAction::Kill
    } else {
        SignalAction::Forward
    }
}

/// Standard input on its way to the job.
#[derive(Debug, Default)]
struct StdinWindow {
    /// Bytes sent that the guest has not acknowledged yet, at most [`STDIN_WINDOW`].
    in_flight: usize,
    /// A chunk that did not fit in the window (or came before the job was sent).
    held: Option<Vec<u8>>,
    /// The end of input came after `held`: send it once `held` is out.
    end_after_held: bool,
}

/// The conversation's state.
pub struct Conversation {
    spec: JobSpec,
    start: Instant,
    boot_time: Option<Duration>,
    end: Option<(JobEnd, Instant)>,
    /// Signals for the job that came before the job was sent.
    pending_signals: Vec<i32>,
    /// A stop signal ends the run: one was passed on to the job already, or the job
    /// gets none.
    next_stop_kills: bool,
    /// `Some` while the job reads standard input and has not closed it.
    stdin: Option<StdinWindow>,
    /// When the job must have ended (the run's `--timeout` from the VM's start).
    deadline: Instant,
    /// When the guest's end of the channel was first seen closed without an End.
    channel_closed_at: Option<Instant>,
}

/// How long QEMU may take to exit after the guest reported the job's end.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// A guest closes its end of the channel only on its way out (after its End, or when
/// it panics); a VM still running this long after its channel ended without an End
/// (the vsock backend died, say) can never report, and the guest waits for a host that
/// reads: end it rather than wait for the timeout.
pub const CHANNEL_LOST_GRACE: Duration = Duration::from_secs(10);

/// What a VM that exited without reporting the job's end ends as: a kernel panic when
/// the console says so, else QEMU's exit as `qemu_reason` names it.
pub fn exit_without_end(console_says_panic: bool, qemu_reason: String) -> Outcome {
    match console_says_panic {
        true => Outcome::KernelPanic,
        false => Outcome::NoStatus(qemu_reason),
    }
}

impl Conversation {
    /// A conversation about `spec`, whose VM started at `start`. With
    /// `stop_signals_to_job`, the first stop signal goes to the job (see
    /// [`signal_action`]); otherwise every stop signal ends the run.
    pub fn new(
        spec: JobSpec,
        start: Instant,
        deadline: Instant,
        stop_signals_to_job: bool,
    ) -> Self {
        let stdin = spec.stdin.then(StdinWindow::default);
        Conversation {
            spec,
            start,
            deadline,
            channel_closed_at: None,
            boot_time: None,
            end: None,
            pending_signals: Vec::new(),
            next_stop_kills: !stop_signals_to_job,
            stdin,
        }
    }

    /// The guest greeted us: the time from the VM's start to then.
    pub fn boot_time(&self) -> Option<Duration> {
        self.boot_time
    }

    /// The job's end, once reported, and when it came.
    pub fn end(&self) -> Option<(&JobEnd, Instant)> {
        self.end.as_ref().map(|(e, at)| (e, *at))
    }

    /// The guest's end of the channel is closed (idempotent: the first time counts).
    pub fn on_channel_closed(&mut self, now: Instant) {
        self.channel_closed_at.get_or_insert(now);
    }

    /// What the time `now` decides: after the job's end, only whether QEMU took too long
    /// to power off; before it, the deadline, then a channel lost for good.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if let Some((e, at)) = &self.end {
            return match now.saturating_duration_since(*at) > SHUTDOWN_GRACE {
                true => vec![
                    Action::Note("the VM did not power off after the job ended; killed it".into()),
                    Action::Finish(Outcome::Finished(e.clone())),
                ],
                false => Vec::new(),
            };
        }
        if now >= self.deadline {
            return vec![Action::KillVm(Outcome::Timeout)];
        }
        match self.channel_closed_at {
            Some(t) if now.saturating_duration_since(t) > CHANNEL_LOST_GRACE => {
                vec![Action::KillVm(Outcome::NoStatus(format!(
                    "the job channel closed without the job's end and the VM was still up {}s later; killed it",
                    CHANNEL_LOST_GRACE.as_secs()
                )))]
            }
            _ => Vec::new(),
        }
    }

    /// The run's outcome once the VM is gone (it exited, or was killed for `why`) and
    /// what the stream still held has been read: the job's end if it came after all
    /// (queued behind output a slow reader had not taken), else `why`.
    pub fn verdict(&self, why: Outcome) -> Outcome {
        match &self.end {
            Some((e, _)) => Outcome::Finished(e.clone()),
            None => why,
        }
    }

    /// True while the runner should read its standard input for the job: the job reads
    /// it and no chunk is waiting for room in the window.
    pub fn wants_input(&self) -> bool {
        self.stdin
            .as_ref()
            .is_some_and(|w| w.held.is_none() && !w.end_after_held)
    }

    /// One message from the guest, or the error that ended the stream (after every
    /// message before it).
    pub fn on_guest(&mut self, msg: Result<GuestMsg, WireError>, now: Instant) -> Vec<Action> {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return vec![Action::KillVm(Outcome::ProtocolError(e.to_string()))],
        };
        match msg {
            GuestMsg::Hello { magic, version } => {
                if magic != MAGIC || version != VERSION {
                    return vec![Action::KillVm(Outcome::NoStatus(format!(
                        "guest speaks protocol {magic:#x} v{version}, host v{VERSION}; rebuild the image"
                    )))];
                }
                self.boot_time = Some(now.saturating_duration_since(self.start));
                let mut out = vec![Action::Send(HostMsg::Job(self.spec.clone()))];
                out.extend(
                    std::mem::take(&mut self.pending_signals)
                        .into_iter()
                        .map(|sig| Action::Send(HostMsg::Signal(sig))),
                );
                out.extend(self.release_held());
                out
            }
            GuestMsg::Stdout(d) => vec![Action::Stdout(d)],
            GuestMsg::Stderr(d) => vec![Action::Stderr(d)],
            GuestMsg::Log(text) => vec![Action::Note(format!("guest init: {text}"))],
            GuestMsg::StdinTaken(n) => match self.stdin.as_mut() {
                Some(w) => {
                    w.in_flight = w.in_flight.saturating_sub(n as usize);
                    self.release_held()
                }
                None => Vec::new(),
            },
            GuestMsg::StdinClosed => match self.stdin.take() {
                Some(_) => vec![Action::StopInput],
                None => Vec::new(),
            },
            GuestMsg::End(e) => {
                self.end = Some((e, now));
                vec![Action::Send(HostMsg::EndAck)]
            }
        }
    }

    /// A signal the user sent the runner. `output_blocked`: the job's output cannot be
    /// delivered now, so a stop signal passed on to the job could never report back past
    /// it, and ends the run at once instead.
    pub fn on_signal(&mut self, sig: i32, output_blocked: bool) -> Vec<Action> {
        if let Some((e, _)) = &self.end {
            // The job is over: a stop signal only cuts the VM's shutdown short.
            return match is_stop_signal(sig) || sig == libc::SIGPIPE {
                true => vec![Action::Finish(Outcome::Finished(e.clone()))],
                false => Vec::new(),
            };
        }
        let guest_up = self.boot_time.is_some();
        match signal_action(sig, guest_up, self.next_stop_kills || output_blocked) {
            SignalAction::Kill => vec![Action::KillVm(Outcome::Interrupted(sig))],
            SignalAction::Forward => {
                self.next_stop_kills |= is_stop_signal(sig);
                if guest_up {
                    vec![Action::Send(HostMsg::Signal(sig))]
                } else {
                    self.pending_signals.push(sig);
                    Vec::new()
                }
            }
        }
    }

    /// The runner's terminal changed size (only asked for when the job has one).
    pub fn on_window_size(&mut self, size: WinSize) -> Vec<Action> {
        match self.boot_time.is_some() && self.end.is_none() {
            true => vec![Action::Send(HostMsg::Resize(size))],
            // Before the job is sent its size goes with it; after its end nothing can.
            false => Vec::new(),
        }
    }

    /// What the runner's standard input brought.
    pub fn on_input(&mut self, event: InputEvent) -> Vec<Action> {
        let Some(w) = self.stdin.as_mut() else {
            return vec![Action::StopInput];
        };
        let mut out = Vec::new();
        match event {
            InputEvent::Data(chunk) if chunk.is_empty() => {}
            InputEvent::Data(chunk) => {
                if w.held.is_some() {
                    // The caller reads only while `wants_input`; keep order anyway.
                    if let Some(held) = w.held.as_mut() {
                        held.extend_from_slice(&chunk);
                    }
                } else {
                    w.held = Some(chunk);
                }
            }
            InputEvent::Failed(e) => {
                out.push(Action::Note(format!(
                    "reading standard input failed: {e}; the job's input ends here"
                )));
                w.end_after_held = true;
            }
            InputEvent::End => w.end_after_held = true,
        }
        out.extend(self.release_held());
        out
    }

    /// Sends the held chunk if the job was sent and the window has room for it, and the
    /// end of input after it when that came.
    fn release_held(&mut self) -> Vec<Action> {
        if self.boot_time.is_none() || self.end.is_some() {
            return Vec::new();
        }
        let Some(w) = self.stdin.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(chunk) = w.held.take() {
            if w.in_flight + chunk.len() > STDIN_WINDOW && w.in_flight > 0 {
                w.held = Some(chunk);
                return out;
            }
            // A chunk larger than the window alone goes in window-sized frames.
            for part in chunk.chunks(STDIN_WINDOW.max(1)) {
                w.in_flight += part.len();
                out.push(Action::Send(HostMsg::Stdin(part.to_vec())));
            }
        }
        if w.end_after_held {
            out.push(Action::Send(HostMsg::StdinEnd));
            self.stdin = None;
            out.push(Action::StopInput);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Result<GuestMsg, WireError> {
        Ok(GuestMsg::Hello {
            magic: MAGIC,
            version: VERSION,
        })
    }

    fn conversation(stdin: bool, stop_to_job: bool) -> (Conversation, Instant) {
        let t0 = Instant::now();
        let spec = JobSpec {
            argv: vec![b"true".to_vec()],
            stdin,
            ..JobSpec::default()
        };
        let deadline = t0 + Duration::from_secs(600);
        (Conversation::new(spec, t0, deadline, stop_to_job), t0)
    }

    fn sent(actions: &[Action]) -> Vec<HostMsg> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_greeting_gets_the_job_and_the_boot_time_by_the_given_clock() {
        let (mut c, t0) = conversation(false, true);
        let out = c.on_guest(hello(), t0 + Duration::from_millis(640));
        assert!(matches!(&sent(&out)[..], [HostMsg::Job(j)] if j.argv == [b"true".to_vec()]));
        assert_eq!(c.boot_time(), Some(Duration::from_millis(640)));
    }

    #[test]
    fn a_guest_of_another_protocol_version_ends_the_run_by_name() {
        let (mut c, t0) = conversation(false, true);
        let out = c.on_guest(
            Ok(GuestMsg::Hello {
                magic: MAGIC,
                version: VERSION - 1,
            }),
            t0,
        );
        assert!(
            matches!(&out[..], [Action::KillVm(Outcome::NoStatus(why))] if why.contains("rebuild the image")),
            "{out:?}"
        );
    }

    #[test]
    fn output_is_routed_and_a_bad_frame_is_a_protocol_error() {
        let (mut c, t0) = conversation(false, true);
        c.on_guest(hello(), t0);
        assert_eq!(
            c.on_guest(Ok(GuestMsg::Stdout(b"o".to_vec())), t0),
            [Action::Stdout(b"o".to_vec())]
        );
        assert_eq!(
            c.on_guest(Ok(GuestMsg::Stderr(b"e".to_vec())), t0),
            [Action::Stderr(b"e".to_vec())]
        );
        assert_eq!(
            c.on_guest(Ok(GuestMsg::Log("x".into())), t0),
            [Action::Note("guest init: x".into())]
        );
        assert_eq!(
            c.on_guest(Err(WireError::UnknownKind(0x7f)), t0),
            [Action::KillVm(Outcome::ProtocolError(
                "unknown message kind 0x7f".into()
            ))]
        );
    }

    #[test]
    fn the_end_is_acknowledged_and_remembered_with_its_time() {
        let (mut c, t0) = conversation(false, true);
        c.on_guest(hello(), t0);
        let at = t0 + Duration::from_secs(3);
        let out = c.on_guest(Ok(GuestMsg::End(JobEnd::Exited(4))), at);
        assert_eq!(sent(&out), [HostMsg::EndAck]);
        assert_eq!(c.end(), Some((&JobEnd::Exited(4), at)));
        // A stop signal after the end cuts the shutdown short with the job's status.
        assert_eq!(
            c.on_signal(libc::SIGINT, false),
            [Action::Finish(Outcome::Finished(JobEnd::Exited(4)))]
        );
        assert!(c.on_signal(libc::SIGUSR1, false).is_empty());
    }

    #[test]
    fn signals_before_the_guest_is_up_kill_or_wait_for_the_job() {
        let (mut c, t0) = conversation(false, true);
        // USR1 waits for the job; a stop signal with no job to take it ends the run.
        assert!(c.on_signal(libc::SIGUSR1, false).is_empty());
        let out = c.on_guest(hello(), t0);
        assert!(matches!(
            &sent(&out)[..],
            [HostMsg::Job(_), HostMsg::Signal(s)] if *s == libc::SIGUSR1
        ));
        let (mut c, _) = conversation(false, true);
        assert_eq!(
            c.on_signal(libc::SIGTERM, false),
            [Action::KillVm(Outcome::Interrupted(libc::SIGTERM))]
        );
    }

    #[test]
    fn the_first_stop_signal_is_the_jobs_the_second_ends_the_run() {
        let (mut c, t0) = conversation(false, true);
        c.on_guest(hello(), t0);
        assert_eq!(
            c.on_signal(libc::SIGINT, false),
            [Action::Send(HostMsg::Signal(libc::SIGINT))]
        );
        assert_eq!(
            c.on_signal(libc::SIGINT, false),
            [Action::KillVm(Outcome::Interrupted(libc::SIGINT))]
        );
        // Without stop signals for the job (the test suite), the first one ends it.
        let (mut c, t0) = conversation(false, false);
        c.on_guest(hello(), t0);
        assert_eq!(
            c.on_signal(libc::SIGTERM, false),
            [Action::KillVm(Outcome::Interrupted(libc::SIGTERM))]
        );
        // Blocked output: the job could not report back, so the run ends at once.
        let (mut c, t0) = conversation(false, true);
        c.on_guest(hello(), t0);
        assert_eq!(
            c.on_signal(libc::SIGHUP, true),
            [Action::KillVm(Outcome::Interrupted(libc::SIGHUP))]
        );
        // SIGPIPE always ends it; USR2 always goes to the job.
        assert_eq!(
            c.on_signal(libc::SIGPIPE, false),
            [Action::KillVm(Outcome::Interrupted(libc::SIGPIPE))]
        );
        assert_eq!(
            c.on_signal(libc::SIGUSR2, true),
            [Action::Send(HostMsg::Signal(libc::SIGUSR2))]
        );
    }

    #[test]
    fn every_signal_number_gets_a_decision_that_fits_the_policy() {
        for up in [false, true] {
            for next_kills in [false, true] {
                for sig in 1..=64 {
                    let got = signal_action(sig, up, next_kills);
                    let kill = sig == libc::SIGPIPE || is_stop_signal(sig) && (!up || next_kills);
                    assert_eq!(
                        got == SignalAction::Kill,
                        kill,
                        "sig {sig} up {up} {next_kills}"
                    );
                }
            }
        }
    }

    #[test]
    fn standard_input_never_runs_more_than_the_window_ahead() {
        let (mut c, t0) = conversation(true, true);
        // Input that comes before the job is held until the job is sent.
        assert!(c.on_input(InputEvent::Data(vec![1; 1000])).is_empty());
        assert!(!c.wants_input());
        let out = c.on_guest(hello(), t0);
        assert!(matches!(&sent(&out)[..], [HostMsg::Job(_), HostMsg::Stdin(d)] if d.len() == 1000));
        assert!(c.wants_input());
        // Fill the window to the byte, then one more chunk is held.
        let rest = STDIN_WINDOW - 1000;
        assert_eq!(sent(&c.on_input(InputEvent::Data(vec![2; rest]))).len(), 1);
        assert!(c.on_input(InputEvent::Data(vec![3; 10])).is_empty());
        assert!(!c.wants_input());
        // An acknowledgement of 9 bytes is not room for 10; of 10 it is.
        assert!(sent(&c.on_guest(Ok(GuestMsg::StdinTaken(9)), t0)).is_empty());
        assert_eq!(
            sent(&c.on_guest(Ok(GuestMsg::StdinTaken(1)), t0)),
            [HostMsg::Stdin(vec![3; 10])]
        );
        assert!(c.wants_input());
        // The end goes after what was held, and input reading stops.
        assert!(c.on_input(InputEvent::Data(vec![4; 5])).is_empty());
        let out = c.on_input(InputEvent::End);
        assert!(out.is_empty(), "the window is full: nothing yet ({out:?})");
        let out = c.on_guest(Ok(GuestMsg::StdinTaken(STDIN_WINDOW as u32)), t0);
        assert_eq!(
            out,
            [
                Action::Send(HostMsg::Stdin(vec![4; 5])),
                Action::Send(HostMsg::StdinEnd),
                Action::StopInput
            ]
        );
        assert!(!c.wants_input());
    }

    #[test]
    fn a_job_that_closes_its_input_stops_the_reading() {
        let (mut c, t0) = conversation(true, true);
        c.on_guest(hello(), t0);
        assert_eq!(
            c.on_guest(Ok(GuestMsg::StdinClosed), t0),
            [Action::StopInput]
        );
        assert!(!c.wants_input());
        assert_eq!(c.on_input(InputEvent::Data(vec![1])), [Action::StopInput]);
    }

    #[test]
    fn a_failed_read_is_named_and_ends_the_input() {
        let (mut c, t0) = conversation(true, true);
        c.on_guest(hello(), t0);
        let out = c.on_input(InputEvent::Failed("EIO".into()));
        assert!(matches!(&out[0], Action::Note(n) if n.contains("EIO")));
        assert_eq!(sent(&out), [HostMsg::StdinEnd]);
    }

    #[test]
    fn the_deadline_kills_the_vm_but_not_after_the_jobs_end() {
        let (mut c, t0) = conversation(false, true);
        c.on_guest(hello(), t0);
        assert!(c.on_tick(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(
            c.on_tick(t0 + Duration::from_secs(600)),
            [Action::KillVm(Outcome::Timeout)]
        );
        // An end that arrives (drained) after the kill still wins.
        assert_eq!(c.verdict(Outcome::Timeout), Outcome::Timeout);
        c.on_guest(
            Ok(GuestMsg::End(JobEnd::Exited(0))),
            t0 + Duration::from_secs(601),
        );
        assert_eq!(
            c.verdict(Outcome::Timeout),
            Outcome::Finished(JobEnd::Exited(0))
        );
        // After the end the deadline no longer counts: only the shutdown grace does.
        assert!(c.on_tick(t0 + Duration::from_secs(610)).is_empty());
        let late = t0 + Duration::from_secs(601) + SHUTDOWN_GRACE + Duration::from_millis(1);
        let out = c.on_tick(late);
        assert!(matches!(&out[0], Action::Note(n) if n.contains("did not power off")));
        assert_eq!(out[1], Action::Finish(Outcome::Finished(JobEnd::Exited(0))));
    }

    #[test]
    fn a_channel_closed_without_an_end_is_given_up_after_its_grace() {
        let (mut c, t0) = conversation(false, true);
        c.on_guest(hello(), t0);
        let closed = t0 + Duration::from_secs(5);
        c.on_channel_closed(closed);
        // Seen closed again later: the first time counts.
        c.on_channel_closed(closed + Duration::from_secs(3));
        assert!(c.on_tick(closed + CHANNEL_LOST_GRACE).is_empty());
        let out = c.on_tick(closed + CHANNEL_LOST_GRACE + Duration::from_millis(1));
        assert!(
            matches!(&out[..], [Action::KillVm(Outcome::NoStatus(why))] if why.contains("channel closed")),
            "{out:?}"
        );
    }

    #[test]
    fn a_vm_that_exits_without_an_end_is_a_panic_or_named() {
        assert_eq!(exit_without_end(true, "x".into()), Outcome::KernelPanic);
        assert_eq!(
            exit_without_end(false, "QEMU exited with status 1".into()),
            Outcome::NoStatus("QEMU exited with status 1".into())
        );
    }

    #[test]
    fn resizes_go_out_only_while_the_job_runs() {
        let (mut c, t0) = conversation(false, true);
        let size = WinSize {
            rows: 40,
            cols: 120,
        };
        assert!(c.on_window_size(size).is_empty());
        c.on_guest(hello(), t0);
        assert_eq!(
            c.on_window_size(size),
            [Action::Send(HostMsg::Resize(size))]
        );
        c.on_guest(Ok(GuestMsg::End(JobEnd::Exited(0))), t0);
        assert!(c.on_window_size(size).is_empty());
    }
}
