//! The metric handles the crate records into: the `metrics` crate's own with the feature
//! `metrics`, and empty stand-ins without it, so the code that records reads the same
//! either way and compiles to nothing when the feature is off.
//!
//! A handle is taken from the recorder installed when it is made: install one (an
//! exporter, such as `metrics-exporter-prometheus`) before building backends and layers.

#[cfg(all(feature = "metrics", any(feature = "cluster", feature = "redis")))]
pub(crate) use metrics::Histogram;
#[cfg(feature = "metrics")]
pub(crate) use metrics::{Counter, Gauge};

/// A label's name and value.
pub(crate) type Label<'a> = (&'static str, &'a str);

#[cfg(feature = "metrics")]
fn labels(labels: &[Label<'_>]) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|&(name, value)| metrics::Label::new(name, value.to_owned()))
        .collect()
}

/// The counter `name` with `labels`, from the recorder installed now.
#[cfg(feature = "metrics")]
pub(crate) fn counter(name: &'static str, with: &[Label<'_>]) -> Counter {
    super::describe();
    metrics::counter!(name, labels(with))
}

/// The gauge `name` with `labels`, from the recorder installed now.
#[cfg(feature = "metrics")]
pub(crate) fn gauge(name: &'static str, with: &[Label<'_>]) -> Gauge {
    super::describe();
    metrics::gauge!(name, labels(with))
}

/// The histogram `name` with `labels`, from the recorder installed now.
#[cfg(all(feature = "metrics", any(feature = "cluster", feature = "redis")))]
pub(crate) fn histogram(name: &'static str, with: &[Label<'_>]) -> Histogram {
    super::describe();
    metrics::histogram!(name, labels(with))
}

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// Without the feature: handles that record nothing (not every build records into
/// each kind).
#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
mod off {
    use super::Label;

    #[derive(Clone, Debug, Default)]
    pub(crate) struct Counter;
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Gauge;
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Histogram;

    impl Counter {
        #[inline(always)]
        pub(crate) fn increment(&self, _: u64) {}
        #[inline(always)]
        pub(crate) fn absolute(&self, _: u64) {}
    }

    impl Gauge {
        #[inline(always)]
        pub(crate) fn set<T>(&self, _: T) {}
    }

    impl Histogram {
        #[inline(always)]
        pub(crate) fn record<T>(&self, _: T) {}
    }

    pub(crate) fn counter(_: &'static str, _: &[Label<'_>]) -> Counter {
        Counter
    }

    pub(crate) fn gauge(_: &'static str, _: &[Label<'_>]) -> Gauge {
        Gauge
    }

    pub(crate) fn histogram(_: &'static str, _: &[Label<'_>]) -> Histogram {
        Histogram
    }
}
