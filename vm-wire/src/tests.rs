use super::*;

fn sample_job() -> JobSpec {
    JobSpec {
        argv: vec![b"/bin/sh".to_vec(), b"-c".to_vec(), b"echo \xff".to_vec()],
        env: vec![(b"PATH".to_vec(), b"/bin".to_vec())],
        cwd: b"/".to_vec(),
        disks: vec![DiskMount {
            serial: "src".into(),
            target: b"/src".to_vec(),
            fstype: "ext2".into(),
            read_only: true,
        }],
        stdin: true,
        shares: vec![ShareMount {
            tag: "share0".into(),
            target: b"/out".to_vec(),
            read_only: false,
        }],
        tty: Some(WinSize { rows: 24, cols: 80 }),
    }
}

fn host_msgs() -> Vec<HostMsg> {
    vec![
        HostMsg::Job(sample_job()),
        HostMsg::Signal(15),
        HostMsg::EndAck,
        HostMsg::Stdin(b"in\x00\xff".to_vec()),
        HostMsg::StdinEnd,
        HostMsg::Resize(WinSize {
            rows: 50,
            cols: 132,
        }),
        HostMsg::Job(JobSpec {
            tty: None,
            shares: Vec::new(),
            ..sample_job()
        }),
    ]
}

fn guest_msgs() -> Vec<GuestMsg> {
    vec![
        GuestMsg::Hello {
            magic: MAGIC,
            version: VERSION,
        },
        GuestMsg::Stdout(b"out\x00\xff".to_vec()),
        GuestMsg::Stderr(Vec::new()),
        GuestMsg::Log("mount /dev/pts failed".into()),
        GuestMsg::End(JobEnd::Exited(7)),
        GuestMsg::End(JobEnd::Signaled(9)),
        GuestMsg::End(JobEnd::SpawnFailed {
            status: 127,
            message: "nope: not found".into(),
        }),
        GuestMsg::End(JobEnd::SetupFailed("no disk".into())),
        GuestMsg::End(JobEnd::InitPanicked("index out of bounds".into())),
        GuestMsg::StdinTaken(16384),
        GuestMsg::StdinClosed,
    ]
}

fn body(frame: &[u8]) -> &[u8] {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix covers the body");
    &frame[4..]
}

#[test]
fn every_message_round_trips() {
    for m in host_msgs() {
        assert_eq!(HostMsg::decode(body(&m.encode())).unwrap(), m);
    }
    for m in guest_msgs() {
        assert_eq!(GuestMsg::decode(body(&m.encode())).unwrap(), m);
    }
}

#[test]
fn every_truncation_of_a_structured_message_is_refused() {
    for m in host_msgs() {
        if matches!(m, HostMsg::Stdin(_)) {
            continue; // whole payload: a prefix is a shorter chunk (but never empty)
        }
        let frame = m.encode();
        let b = body(&frame);
        for cut in 0..b.len() {
            assert!(HostMsg::decode(&b[..cut]).is_err(), "{m:?} cut at {cut}");
        }
    }
    for m in guest_msgs() {
        if matches!(
            m,
            GuestMsg::Stdout(_) | GuestMsg::Stderr(_) | GuestMsg::Log(_)
        ) {
            continue; // whole-payload messages: every prefix is itself a valid chunk
        }
        let frame = m.encode();
        let b = body(&frame);
        for cut in 0..b.len() {
            assert!(GuestMsg::decode(&b[..cut]).is_err(), "{m:?} cut at {cut}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut b = body(&HostMsg::Signal(2).encode()).to_vec();
    b.push(0);
    assert_eq!(HostMsg::decode(&b), Err(WireError::Trailing(1)));
    assert_eq!(HostMsg::decode(&[0x83, 0]), Err(WireError::Trailing(1)));
    let mut b = body(&GuestMsg::End(JobEnd::Exited(0)).encode()).to_vec();
    b.extend_from_slice(b"xx");
    assert_eq!(GuestMsg::decode(&b), Err(WireError::Trailing(2)));
}

#[test]
fn unknown_kinds_and_directions_are_refused() {
    assert_eq!(HostMsg::decode(&[0x7f]), Err(WireError::UnknownKind(0x7f)));
    // A guest message is not a host message and vice versa.
    let hello = GuestMsg::Hello {
        magic: MAGIC,
        version: VERSION,
    }
    .encode();
    assert!(matches!(
        HostMsg::decode(body(&hello)),
        Err(WireError::UnknownKind(_))
    ));
    assert!(matches!(
        GuestMsg::decode(body(&HostMsg::Signal(1).encode())),
        Err(WireError::UnknownKind(_))
    ));
    assert_eq!(GuestMsg::decode(&[]), Err(WireError::Empty));
}

#[test]
fn hostile_counts_do_not_allocate() {
    // argv count of 4 billion with no bytes behind it.
    let mut b = vec![0x81];
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(HostMsg::decode(&b), Err(WireError::Truncated("argv")));
    // A byte string claiming more than the frame holds.
    let mut b = vec![0x81, 1, 0, 0, 0];
    b.extend_from_slice(&1000u32.to_le_bytes());
    b.extend_from_slice(b"short");
    assert_eq!(HostMsg::decode(&b), Err(WireError::Truncated("argv")));
}

#[test]
fn invalid_field_values_are_refused() {
    let mut job = sample_job();
    job.argv.clear();
    assert_eq!(
        HostMsg::decode(body(&HostMsg::Job(job).encode())),
        Err(WireError::Invalid("empty argv"))
    );
    // Ends in: last disk's read-only flag, stdin flag, share count (u32), tty flag.
    let plain = JobSpec {
        shares: Vec::new(),
        tty: None,
        ..sample_job()
    };
    let mut b = body(&HostMsg::Job(plain).encode()).to_vec();
    let n = b.len();
    b[n - 1] = 2;
    assert_eq!(HostMsg::decode(&b), Err(WireError::Invalid("tty flag")));
    b[n - 6] = 2;
    assert_eq!(HostMsg::decode(&b), Err(WireError::Invalid("stdin flag")));
    b[n - 7] = 2;
    assert_eq!(HostMsg::decode(&b), Err(WireError::Invalid("disk flags")));
    let mut shared = body(&HostMsg::Job(sample_job()).encode()).to_vec();
    let n = shared.len();
    shared[n - 6] = 2; // read-only flag of the share, before the tty flag and size
    assert_eq!(
        HostMsg::decode(&shared),
        Err(WireError::Invalid("share flags"))
    );
    // An empty chunk would read as end-of-file to the job: only StdinEnd says that.
    let empty = body(&HostMsg::Stdin(Vec::new()).encode()).to_vec();
    assert_eq!(
        HostMsg::decode(&empty),
        Err(WireError::Invalid("empty stdin chunk"))
    );
    assert_eq!(
        GuestMsg::decode(&[0x05, 9, 0, 0, 0, 0]),
        Err(WireError::Invalid("end kind"))
    );
    assert_eq!(GuestMsg::decode(&[0x04, 0xff]), Err(WireError::Utf8("log")));
}

#[test]
fn frame_buffer_reassembles_a_stream_split_anywhere() {
    let mut stream = Vec::new();
    for m in guest_msgs() {
        stream.extend(m.encode());
    }
    for step in [1, 2, 3, 7, 64, stream.len()] {
        let mut fb = FrameBuffer::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(step) {
            fb.push(chunk);
            while let Some(b) = fb.next_frame().unwrap() {
                got.push(GuestMsg::decode(&b).unwrap());
            }
        }
        assert_eq!(got, guest_msgs(), "chunk size {step}");
        assert_eq!(fb.pending(), 0);
    }
}

#[test]
fn frame_buffer_refuses_oversized_and_empty_frames() {
    let mut fb = FrameBuffer::new();
    fb.push(&((MAX_FRAME + 1) as u32).to_le_bytes());
    assert_eq!(fb.next_frame(), Err(WireError::TooLarge(MAX_FRAME + 1)));
    let mut fb = FrameBuffer::new();
    fb.push(&[0, 0, 0, 0]);
    assert_eq!(fb.next_frame(), Err(WireError::Empty));
    let mut fb = FrameBuffer::new();
    fb.push(&[5, 0, 0]);
    assert_eq!(fb.next_frame(), Ok(None));
}

#[test]
fn large_output_survives_compaction() {
    // Several frames arrive in one read (a host slow to drain) and the last one only
    // in part: the consumed front must be compacted away while the partial frame
    // behind it stays intact. Draining after every push would empty the buffer each
    // time, and only the clear-on-push path would ever run.
    let frames: Vec<Vec<u8>> = (0..12u8)
        .map(|i| GuestMsg::Stdout(vec![i; MAX_CHUNK]).encode())
        .collect();
    let stream: Vec<u8> = frames.concat();
    let cut = stream.len() - MAX_CHUNK / 2;
    let mut fb = FrameBuffer::new();
    fb.push(&stream[..cut]);
    let mut got = Vec::new();
    let mut compacted = false;
    while let Some(b) = fb.next_frame().unwrap() {
        got.push(GuestMsg::decode(&b).unwrap());
        // The compaction branch moves the unread bytes to the front.
        compacted |= fb.start == 0 && fb.pending() > 0;
    }
    assert!(compacted, "the buffer was never compacted");
    assert!(
        fb.buf.len() < cut,
        "consumed bytes are still held: {} of {cut}",
        fb.buf.len()
    );
    assert_eq!(got.len(), frames.len() - 1);
    fb.push(&stream[cut..]);
    while let Some(b) = fb.next_frame().unwrap() {
        got.push(GuestMsg::decode(&b).unwrap());
    }
    assert_eq!(fb.pending(), 0);
    let want: Vec<GuestMsg> = (0..12u8)
        .map(|i| GuestMsg::Stdout(vec![i; MAX_CHUNK]))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn random_bytes_never_panic() {
    // xorshift: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 48) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = b.first_mut() {
            // Bias towards valid kinds so the field decoders get exercised.
            *first = [0x01, 0x05, 0x06, 0x81, 0x82, 0x84][(next() % 6) as usize];
        }
        let _ = HostMsg::decode(&b);
        let _ = GuestMsg::decode(&b);
        let mut fb = FrameBuffer::new();
        fb.push(&b);
        let _ = fb.next_frame();
    }
}

#[test]
fn inbox_delivers_everything_before_a_bad_frame_then_the_error_once() {
    let mut stream = GuestMsg::Stdout(b"first".to_vec()).encode();
    stream.extend(GuestMsg::Stderr(b"second".to_vec()).encode());
    // A frame whose kind no guest sends, then a good frame the inbox must not trust.
    stream.extend([1, 0, 0, 0, 0x7f]);
    stream.extend(GuestMsg::End(JobEnd::Exited(0)).encode());
    let mut inbox = Inbox::<GuestMsg>::new();
    inbox.push(&stream);
    assert_eq!(
        inbox.next_msg(),
        Some(Ok(GuestMsg::Stdout(b"first".to_vec())))
    );
    assert_eq!(
        inbox.next_msg(),
        Some(Ok(GuestMsg::Stderr(b"second".to_vec())))
    );
    assert_eq!(inbox.next_msg(), Some(Err(WireError::UnknownKind(0x7f))));
    assert!(inbox.failed());
    assert_eq!(inbox.next_msg(), None);
    inbox.push(&GuestMsg::End(JobEnd::Exited(0)).encode());
    assert_eq!(inbox.next_msg(), None, "a failed stream stays failed");
}

#[test]
fn inbox_names_an_oversized_frame_after_the_messages_before_it() {
    let mut stream = HostMsg::Signal(2).encode();
    stream.extend(((MAX_FRAME + 1) as u32).to_le_bytes());
    let mut inbox = Inbox::<HostMsg>::new();
    inbox.push(&stream);
    assert_eq!(inbox.next_msg(), Some(Ok(HostMsg::Signal(2))));
    assert_eq!(
        inbox.next_msg(),
        Some(Err(WireError::TooLarge(MAX_FRAME + 1)))
    );
    assert_eq!(inbox.next_msg(), None);
}

#[test]
fn inbox_waits_for_the_rest_of_a_partial_frame() {
    let frame = HostMsg::Job(sample_job()).encode();
    let mut inbox = Inbox::<HostMsg>::new();
    for byte in &frame[..frame.len() - 1] {
        inbox.push(std::slice::from_ref(byte));
        assert_eq!(inbox.next_msg(), None);
    }
    assert_eq!(inbox.pending(), frame.len() - 1);
    inbox.push(&frame[frame.len() - 1..]);
    assert_eq!(inbox.next_msg(), Some(Ok(HostMsg::Job(sample_job()))));
    assert!(!inbox.failed());
}
