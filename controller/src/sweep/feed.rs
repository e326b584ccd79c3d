//! What clients following a controller-run sweep see: its recent lines, its progress and its
//! end, kept for late subscribers and broadcast to the others.
//!
//! The engine's progress display publishes into it synchronously (from the bar's updates), so
//! it is a small lock around the backlog rather than a task: a subscriber takes the backlog
//! and its receiver under the same lock, and gets each event once.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Lines a client attaching late still gets.
const BACKLOG: usize = 500;

/// A sweep's lines, progress and end.
pub struct Feed {
    state: Mutex<FeedState>,
    tx: broadcast::Sender<proto::SweepEvent>,
}

#[derive(Default)]
struct FeedState {
    lines: VecDeque<String>,
    progress: proto::SweepProgress,
    finished: Option<proto::SweepFinished>,
}

/// Wraps one event for the wire.
pub(super) fn event(e: proto::sweep_event::Event) -> proto::SweepEvent {
    proto::SweepEvent { event: Some(e) }
}

impl Feed {
    pub(super) fn new() -> Feed {
        Feed {
            state: Mutex::new(FeedState::default()),
            tx: broadcast::channel(1024).0,
        }
    }

    pub fn line(&self, s: String) {
        let mut st = self.state.lock().expect("feed lock");
        if st.lines.len() == BACKLOG {
            st.lines.pop_front();
        }
        st.lines.push_back(s.clone());
        // sent under the lock: a subscriber gets each line once, from the backlog or here
        let _ = self.tx.send(event(proto::sweep_event::Event::Line(s)));
    }

    pub fn progress(&self, done: u64, total: u64, message: String) {
        let mut st = self.state.lock().expect("feed lock");
        let p = proto::SweepProgress {
            done,
            total,
            message,
        };
        if st.progress != p {
            st.progress = p.clone();
            let _ = self.tx.send(event(proto::sweep_event::Event::Progress(p)));
        }
    }

    pub(super) fn finish(&self, f: proto::SweepFinished) {
        let mut st = self.state.lock().expect("feed lock");
        st.finished = Some(f.clone());
        let _ = self.tx.send(event(proto::sweep_event::Event::Finished(f)));
    }

    /// The state so far and the events after it.
    pub(super) fn subscribe(
        &self,
    ) -> (
        Vec<proto::SweepEvent>,
        broadcast::Receiver<proto::SweepEvent>,
    ) {
        let st = self.state.lock().expect("feed lock");
        let mut backlog: Vec<proto::SweepEvent> = st
            .lines
            .iter()
            .map(|l| event(proto::sweep_event::Event::Line(l.clone())))
            .collect();
        backlog.push(event(proto::sweep_event::Event::Progress(
            st.progress.clone(),
        )));
        if let Some(f) = &st.finished {
            backlog.push(event(proto::sweep_event::Event::Finished(f.clone())));
        }
        (backlog, self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(e: &proto::SweepEvent) -> Option<&str> {
        match &e.event {
            Some(proto::sweep_event::Event::Line(l)) => Some(l),
            _ => None,
        }
    }

    #[test]
    fn a_late_subscriber_gets_the_backlog_then_every_new_event_once() {
        let f = Feed::new();
        for i in 0..BACKLOG + 5 {
            f.line(format!("line {i}"));
        }
        f.progress(10, 100, "test a".into());
        f.progress(10, 100, "test a".into()); // unchanged: not sent again
        let (backlog, mut rx) = f.subscribe();
        let lines: Vec<&str> = backlog.iter().filter_map(line_of).collect();
        assert_eq!(lines.len(), BACKLOG, "the oldest lines are dropped");
        assert_eq!(lines[0], "line 5");
        assert_eq!(lines[BACKLOG - 1], format!("line {}", BACKLOG + 4));
        assert!(matches!(
            backlog.last().unwrap().event,
            Some(proto::sweep_event::Event::Progress(ref p)) if p.done == 10
        ));
        f.line("after".into());
        f.finish(proto::SweepFinished {
            status: "done".into(),
            ..Default::default()
        });
        assert_eq!(line_of(&rx.try_recv().unwrap()), Some("after"));
        assert!(matches!(
            rx.try_recv().unwrap().event,
            Some(proto::sweep_event::Event::Finished(_))
        ));
        assert!(rx.try_recv().is_err());
        // a subscriber after the end gets the end in its backlog
        let (backlog, _) = f.subscribe();
        assert!(matches!(
            backlog.last().unwrap().event,
            Some(proto::sweep_event::Event::Finished(_))
        ));
    }
}
