//! XEP-0198 stream management, without I/O: the outbound queue of stanzas
//! the peer has not acknowledged yet, the counter arithmetic (mod 2^32),
//! and the nonzas' wire forms. The session drives it: it records each
//! stanza as it writes it, feeds in the client's `<a/>` and `<resume/>`
//! counts, and retransmits what [`Outbox::resend`] gives back.

use std::collections::VecDeque;

use minidom::Element;

use crate::ns;
use crate::stanza::escape;

/// The queue has more unacknowledged stanzas than its limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// The peer acknowledged stanzas that were never sent to it (§4:
/// `handled-count-too-high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

/// Stanzas sent (or waiting to be sent) and not yet acknowledged, in order.
///
/// Items at the front were written to the peer; items behind them were
/// queued while no connection was attached (a hibernated session). An
/// acknowledgement may only cover written ones.
#[derive(Debug)]
pub struct Outbox<T> {
    /// The last `h` the peer acknowledged.
    acked: u32,
    queue: VecDeque<T>,
    /// How many at the front of `queue` were written.
    written: usize,
    max: usize,
    /// An `<r/>` is outstanding: no need to ask again until it is answered.
    requested: bool,
}

impl<T> Outbox<T> {
    pub fn new(max: usize) -> Self {
        Outbox {
            acked: 0,
            queue: VecDeque::new(),
            written: 0,
            max,
            requested: false,
        }
    }

    /// Records a stanza about to be written. It stays queued until
    /// acknowledged; past `max` the caller closes the stream.
    pub fn sent(&mut self, item: T) -> Result<(), Overflow> {
        // Only ever called while attached, when nothing unsent is queued
        // behind the written items.
        debug_assert_eq!(self.written, self.queue.len());
        self.queue.push_back(item);
        self.written += 1;
        self.check()
    }

    /// Queues a stanza that could not be written (no connection).
    pub fn hold(&mut self, item: T) -> Result<(), Overflow> {
        self.queue.push_back(item);
        self.check()
    }

    fn check(&self) -> Result<(), Overflow> {
        if self.queue.len() > self.max {
            Err(Overflow)
        } else {
            Ok(())
        }
    }

    /// How many stanzas were written since counting began, mod 2^32.
    pub fn sent_count(&self) -> u32 {
        self.acked.wrapping_add(self.written as u32)
    }

    /// Applies the peer's `h`: drops what it acknowledges; returns how many.
    /// An `h` beyond what was written (or behind the last one, which is the
    /// same thing modulo 2^32) is refused and changes nothing.
    pub fn ack(&mut self, h: u32) -> Result<usize, TooHigh> {
        let n = h.wrapping_sub(self.acked) as usize;
        if n > self.written {
            return Err(TooHigh {
                h,
                sent: self.sent_count(),
            });
        }
        self.queue.drain(..n);
        self.written -= n;
        self.acked = h;
        self.requested = false;
        Ok(n)
    }

    /// Everything still unacknowledged, to be written again (after
    /// `<resumed/>`), in order; all of it counts as written from now on.
    pub fn resend(&mut self) -> impl Iterator<Item = &T> {
        self.written = self.queue.len();
        // An `<r/>` sent on the lost connection will never be answered.
        self.requested = false;
        self.queue.iter()
    }

    /// Whether to send `<r/>` now: something written awaits an ack and no
    /// request is outstanding. Asking marks one outstanding.
    pub fn should_request(&mut self) -> bool {
        if self.requested || self.written == 0 {
            return false;
        }
        self.requested = true;
        true
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// What was never acknowledged, in order, when the session ends.
    pub fn into_unacked(self) -> VecDeque<T> {
        self.queue
    }
}

/// The count in an `<a/>` or `<resume/>`.
pub fn h(el: &Element) -> Option<u32> {
    el.attr("h")?.parse().ok()
}

/// Whether an `<enable/>` asks for resumption.
pub fn wants_resume(el: &Element) -> bool {
    matches!(el.attr("resume"), Some("true" | "1"))
}

pub fn enabled(resume: Option<(&str, u64)>) -> String {
    match resume {
        Some((id, max)) => format!(
            "<enabled xmlns='{}' id='{}' resume='true' max='{max}'/>",
            ns::SM,
            escape(id)
        ),
        None => format!("<enabled xmlns='{}'/>", ns::SM),
    }
}

pub fn resumed(previd: &str, h: u32) -> String {
    format!(
        "<resumed xmlns='{}' previd='{}' h='{h}'/>",
        ns::SM,
        escape(previd)
    )
}

pub fn ack(h: u32) -> String {
    format!("<a xmlns='{}' h='{h}'/>", ns::SM)
}

pub const REQUEST: &str = "<r xmlns='urn:xmpp:sm:3'/>";

/// `<failed/>` with a stanza error condition, and the count of the
/// client's stanzas the server handled when it knows it (§5).
pub fn failed(condition: &str, h: Option<u32>) -> String {
    failed_with(condition, h, "")
}

/// `<failed/>` for a `<resume/>` whose `h` acknowledges more than was sent.
pub fn failed_too_high(err: TooHigh, h: u32) -> String {
    let detail = format!(
        "<handled-count-too-high xmlns='{}' h='{}' send-count='{}'/>",
        ns::SM,
        err.h,
        err.sent
    );
    failed_with("undefined-condition", Some(h), &detail)
}

/// The stream error for an `<a/>` that acknowledges more than was sent
/// (§4): `undefined-condition` with `<handled-count-too-high/>` saying by
/// how much.
pub fn too_high_stream_error(err: TooHigh) -> String {
    format!(
        "<stream:error xmlns:stream='{}'><undefined-condition xmlns='{}'/><handled-count-too-high xmlns='{}' h='{}' send-count='{}'/></stream:error>",
        ns::STREAM,
        ns::STREAMS_ERR,
        ns::SM,
        err.h,
        err.sent
    )
}

fn failed_with(condition: &str, h: Option<u32>, detail: &str) -> String {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    format!(
        "<failed xmlns='{}'{h}><{condition} xmlns='{}'/>{detail}</failed>",
        ns::SM,
        ns::STANZAS_ERR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_drops_what_it_covers_and_refuses_more_than_was_sent() {
        let mut o = Outbox::new(10);
        for i in 0..3 {
            o.sent(i).unwrap();
        }
        assert_eq!(o.sent_count(), 3);
        assert_eq!(o.ack(2), Ok(2));
        assert_eq!(o.len(), 1);
        assert_eq!(o.ack(4), Err(TooHigh { h: 4, sent: 3 }));
        // A refused ack changes nothing.
        assert_eq!(o.len(), 1);
        assert_eq!(o.ack(2), Ok(0));
        // Going backwards is as wrong as going too far.
        assert!(o.ack(1).is_err());
        assert_eq!(o.ack(3), Ok(1));
        assert!(o.is_empty());
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        let mut o = Outbox::new(10);
        o.acked = u32::MAX - 1;
        for i in 0..4 {
            o.sent(i).unwrap();
        }
        assert_eq!(o.sent_count(), 2);
        assert_eq!(o.ack(u32::MAX), Ok(1));
        assert_eq!(o.ack(1), Ok(2));
        assert_eq!(o.into_unacked(), [3]);
    }

    #[test]
    fn held_stanzas_cannot_be_acked_until_resent() {
        let mut o = Outbox::new(10);
        o.sent("a").unwrap();
        o.hold("b").unwrap();
        o.hold("c").unwrap();
        assert_eq!(o.sent_count(), 1);
        assert!(o.ack(2).is_err());
        assert_eq!(o.ack(1), Ok(1));
        assert_eq!(o.resend().copied().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(o.sent_count(), 3);
        assert_eq!(o.ack(3), Ok(2));
    }

    #[test]
    fn overflow_past_the_limit() {
        let mut o = Outbox::new(2);
        assert!(o.sent(1).is_ok());
        assert!(o.sent(2).is_ok());
        assert_eq!(o.sent(3), Err(Overflow));
        let mut o = Outbox::new(1);
        assert!(o.hold(1).is_ok());
        assert_eq!(o.hold(2), Err(Overflow));
    }

    #[test]
    fn one_request_outstanding_until_acked() {
        let mut o = Outbox::new(10);
        assert!(!o.should_request(), "nothing to ack");
        o.sent(1).unwrap();
        assert!(o.should_request());
        o.sent(2).unwrap();
        assert!(!o.should_request(), "one <r/> at a time");
        o.ack(1).unwrap();
        assert!(o.should_request(), "one still unacked after the answer");
        o.ack(2).unwrap();
        assert!(!o.should_request());
    }

    #[test]
    fn wire_forms() {
        assert_eq!(
            enabled(Some(("a'b", 300))),
            "<enabled xmlns='urn:xmpp:sm:3' id='a&apos;b' resume='true' max='300'/>"
        );
        assert_eq!(enabled(None), "<enabled xmlns='urn:xmpp:sm:3'/>");
        assert_eq!(
            failed("item-not-found", Some(4)),
            "<failed xmlns='urn:xmpp:sm:3' h='4'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        );
        let f = failed_too_high(TooHigh { h: 9, sent: 2 }, 5);
        let el: Element = f.parse().unwrap();
        assert_eq!(el.attr("h"), Some("5"));
        assert!(el.has_child("undefined-condition", ns::STANZAS_ERR));
        let d = el.get_child("handled-count-too-high", ns::SM).unwrap();
        assert_eq!((d.attr("h"), d.attr("send-count")), (Some("9"), Some("2")));
        let e: Element = too_high_stream_error(TooHigh { h: 9, sent: 2 })
            .replace("<stream:error", "<stream:error xmlns='urn:x'")
            .parse()
            .unwrap();
        assert!(e.has_child("undefined-condition", ns::STREAMS_ERR));
        let d = e.get_child("handled-count-too-high", ns::SM).unwrap();
        assert_eq!((d.attr("h"), d.attr("send-count")), (Some("9"), Some("2")));
        let r: Element = "<resume xmlns='urn:xmpp:sm:3' previd='x' h='7'/>"
            .parse()
            .unwrap();
        assert_eq!(h(&r), Some(7));
        let bad: Element = "<a xmlns='urn:xmpp:sm:3' h='-1'/>".parse().unwrap();
        assert_eq!(h(&bad), None);
        let en: Element = "<enable xmlns='urn:xmpp:sm:3' resume='1'/>"
            .parse()
            .unwrap();
        assert!(wants_resume(&en));
    }
}
