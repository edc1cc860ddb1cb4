//! A set of policies as a check carries it on the wire (ringlimit), and the owner's
//! answer for each policy.
//!
//! A policy is `<name>;<algorithm>;<limit>;<window ms>;<cost>`, with `;shadow` after it
//! for a policy in shadow mode; the policies of a set are joined by `,` (a name holds
//! neither). The algorithm is `fixed`, `sliding` or `gcra`. Everything is read strictly:
//! a name the headers could not carry, a limit, window or cost of zero, a window over
//! 2^42 ms (about 139 years), an algorithm that cannot enforce its numbers, more than [`MAX_POLICIES`] policies or two of one name
//! make the whole check a bad one.
//!
//! The answer for each policy is `<1|0> <remaining> <reset ms>` (allowed, or not).

use std::num::NonZeroU32;
use std::time::Duration;

use crate::policy::{Algorithm, PolicyName, PolicySet, MAX_POLICIES};
use crate::{Decision, Decisions, Policy};

/// The longest window a check may carry: 2^42 ms, about 139 years (a peer's window
/// decides how long its counters live).
pub(crate) const MAX_WINDOW_MS: u64 = 1 << 42;

/// Appends `set` in its wire form to `out` (rendered once per set, and kept in it).
pub(crate) fn encode_policies(set: &PolicySet, out: &mut String) {
    out.push_str(set.wire_or_init(|set| {
        let mut wire = String::new();
        render_policies(set, &mut wire);
        wire.into()
    }));
}

/// Appends `set` in its wire form to `out`, rendered now (for a set used once).
pub(crate) fn render_policies(set: &PolicySet, out: &mut String) {
    let mut number = itoa::Buffer::new();
    for (i, policy) in set.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(policy.name().as_str());
        out.push(';');
        out.push_str(algorithm_token(policy.algorithm()));
        out.push(';');
        out.push_str(number.format(policy.limit()));
        out.push(';');
        out.push_str(number.format(policy.window_ms()));
        out.push(';');
        out.push_str(number.format(policy.cost().get()));
        if policy.shadow() {
            out.push_str(";shadow");
        }
    }
}

/// The set `text` stands for, if it is a valid one.
pub(crate) fn decode_policies(text: &str) -> Option<PolicySet> {
    let mut policies = Vec::with_capacity(2);
    for item in text.split(',') {
        if policies.len() == MAX_POLICIES {
            return None;
        }
        policies.push(decode_policy(item)?);
    }
    PolicySet::new(policies).ok()
}

pub(super) fn decode_policy(item: &str) -> Option<Policy> {
    let mut fields = item.split(';');
    let name = PolicyName::new(fields.next()?).ok()?;
    let algorithm = match fields.next()? {
        "fixed" => Algorithm::FixedWindow,
        "sliding" => Algorithm::SlidingWindow,
        "gcra" => Algorithm::Gcra,
        _ => return None,
    };
    let limit: NonZeroU32 = number(fields.next()?)?;
    let window_ms: u64 = number(fields.next()?)?;
    let cost: NonZeroU32 = number(fields.next()?)?;
    let shadow = match fields.next() {
        None => false,
        Some("shadow") => true,
        Some(_) => return None,
    };
    let window = Duration::from_millis(window_ms);
    let window_fits = (1..=MAX_WINDOW_MS).contains(&window_ms);
    if fields.next().is_some() || !window_fits || !algorithm.supports(limit.get(), window) {
        return None;
    }
    Some(
        Policy::per_window(limit, window)
            .with_name(name)
            .with_algorithm(algorithm)
            .with_cost(cost)
            .with_shadow(shadow),
    )
}

/// `text` as a number, if it is written as one is written here: decimal digits, no sign,
/// no leading zero.
pub(super) fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    (digits && (text == "0" || !text.starts_with('0'))).then(|| text.parse().ok())?
}

/// `field` as a number of decimal digits alone (no sign), if it fits in a `u64`. Unlike
/// [`number`], leading zeros are read, as they were before answers were read as bytes:
/// no owner writes them, and nothing depends on one way of writing a number in an
/// answer, whereas a request's policy-set text is kept and matched whole
/// (`recent_sets`), so there a number has one form.
pub(super) fn decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |number, &byte| {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        number.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The token of `algorithm`.
pub(crate) fn algorithm_token(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::FixedWindow => "fixed",
        Algorithm::SlidingWindow => "sliding",
        Algorithm::Gcra => "gcra",
    }
}

/// Appends each policy's answer to `out`, each after a space.
pub(crate) fn encode_each(decisions: &Decisions, out: &mut String) {
    let mut number = itoa::Buffer::new();
    for decision in decisions.iter() {
        out.push_str(if decision.allowed { " 1 " } else { " 0 " });
        out.push_str(number.format(decision.remaining));
        out.push(' ');
        out.push_str(number.format(decision.reset.as_millis()));
    }
}

/// What an owner said of each policy: allowed, remaining, reset (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Told {
    len: u8,
    each: [(bool, u32, u64); MAX_POLICIES],
}

impl Told {
    /// Reads `<1|0> <remaining> <reset ms>` triples, one space between fields, from
    /// `text`; `None` unless there are between one and [`MAX_POLICIES`] whole ones and
    /// nothing else. Read as bytes: every forwarded check's answer goes through here, and
    /// splitting `str`s cost more than the rest of reading a batch's answer.
    pub(crate) fn decode(text: &[u8]) -> Option<Self> {
        let mut told = Self {
            len: 0,
            each: [(false, 0, 0); MAX_POLICIES],
        };
        let mut fields = text.split(|&byte| byte == b' ');
        while let Some(allowed) = fields.next() {
            let allowed = match allowed {
                b"1" => true,
                b"0" => false,
                _ => return None,
            };
            let remaining = u32::try_from(decimal(fields.next()?)?).ok()?;
            let reset_ms = decimal(fields.next()?)?;
            let slot = told.each.get_mut(usize::from(told.len))?;
            *slot = (allowed, remaining, reset_ms);
            told.len += 1;
        }
        (told.len > 0).then_some(told)
    }

    /// The decisions under `set`, each bounded by its own policy (a remaining count above
    /// the limit counts as the limit, a reset past the longest it can be as that); `None`
    /// when the owner answered for another number of policies.
    pub(crate) fn decisions(&self, set: &PolicySet) -> Option<Decisions> {
        if usize::from(self.len) != set.len() {
            return None;
        }
        Some(Decisions::from_fn(set, |i, policy| {
            let (allowed, remaining, reset_ms) = self.each[i];
            let told = Decision::new(
                allowed,
                policy.limit(),
                remaining,
                Duration::from_millis(reset_ms),
            );
            told.bounded(policy.longest_reset())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_round_trips_and_is_read_strictly() {
        let burst = Policy::per_window(NonZeroU32::new(10).unwrap(), Duration::from_millis(1500))
            .with_name(PolicyName::new("burst/login").unwrap())
            .with_algorithm(Algorithm::Gcra)
            .with_cost(NonZeroU32::new(2).unwrap());
        let daily = Policy::per_window(NonZeroU32::new(1000).unwrap(), Duration::from_secs(86_400))
            .with_name(PolicyName::new("daily").unwrap())
            .with_shadow(true);
        let set = PolicySet::new([burst, daily]).unwrap();
        let mut text = String::new();
        encode_policies(&set, &mut text);
        assert_eq!(
            text,
            "burst/login;gcra;10;1500;2,daily;fixed;1000;86400000;1;shadow"
        );
        assert_eq!(decode_policies(&text), Some(set));
        for bad in [
            "",
            "a;fixed;10;1000",
            "a;fixed;0;1000;1",
            "a;fixed;10;0;1",
            "a;fixed;10;1000;0",
            "a;fixed;10;1000;1;loud",
            "a;fixed;10;1000;1;shadow;x",
            "a;leaky;10;1000;1",
            "a b;fixed;10;1000;1",
            "a;fixed;10;1000;1,a;fixed;5;1000;1",
            "a;sliding;10;9999999999999;1",
            "a;fixed;4294967296;1000;1",
            "a;fixed;1;4398046511105;1",
            "a;fixed;+5;1000;1",
            "a;fixed;05;1000;1",
            "a;fixed;5;1000;+1",
        ] {
            assert_eq!(decode_policies(bad), None, "{bad:?}");
        }
        let nine = ["p;fixed;1;1;1"; 9].join(",");
        assert_eq!(decode_policies(&nine), None);
    }

    #[test]
    fn answers_are_bounded_by_each_policy() {
        let one = |limit, secs| {
            Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(secs))
        };
        let set = PolicySet::new([
            one(5, 60).with_name(PolicyName::new("a").unwrap()),
            one(9, 1).with_name(PolicyName::new("b").unwrap()),
        ])
        .unwrap();
        let told = Told::decode(b"1 4000000 999999999 0 0 500").unwrap();
        let decisions = told.decisions(&set).unwrap();
        assert!(!decisions.allowed());
        assert_eq!(decisions.get(0).unwrap().remaining, 5);
        assert_eq!(decisions.get(0).unwrap().reset, Duration::from_secs(60));
        assert_eq!(decisions.get(1).unwrap().reset, Duration::from_millis(500));
        assert_eq!(Told::decode(b"1 4 5").unwrap().decisions(&set), None);
        for bad in [
            "",
            "2 1 1",
            "1 1",
            "1 x 1",
            "1 1 1 0",
            "1 +1 1",
            "1 1 -1",
            "1  1 1",
            "1 1 1 ",
            " 1 1 1",
            "1 4294967296 1",
            "1 1 18446744073709551616",
        ] {
            assert_eq!(Told::decode(bad.as_bytes()), None, "{bad:?}");
        }
        let most = Told::decode(b"0 4294967295 18446744073709551615").unwrap();
        assert_eq!(most.each[0], (false, u32::MAX, u64::MAX));
    }
}
