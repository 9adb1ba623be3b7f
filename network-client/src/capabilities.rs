//! Capability bitstrings (§2.3): what a transcode job needs, and the two-way compatibility check orchestrators
//! and gateways run on each other.

use crate::proto;

/// Capability ids from go-livepeer's `core/capabilities.go` that a transcoding gateway uses.
#[allow(missing_docs)]
pub mod id {
    pub const H264: u32 = 0;
    pub const MPEGTS: u32 = 1;
    pub const MP4: u32 = 2;
    pub const FRACTIONAL_FRAMERATES: u32 = 3;
    pub const PROFILE_H264_BASELINE: u32 = 7;
    pub const PROFILE_H264_MAIN: u32 = 8;
    pub const PROFILE_H264_HIGH: u32 = 9;
    pub const PROFILE_H264_CONSTRAINED_HIGH: u32 = 10;
    pub const GOP: u32 = 11;
    pub const AUTH_TOKEN: u32 = 12;
}

/// A set of capabilities as a little bitstring of 64-bit words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapabilitySet(Vec<u64>);

impl CapabilitySet {
    /// The set holding `ids`.
    pub fn of(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut set = Self::default();
        for id in ids {
            set.insert(id);
        }
        set
    }

    /// Adds a capability.
    pub fn insert(&mut self, id: u32) {
        let word = (id / 64) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (id % 64);
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: u32) -> bool {
        self.0
            .get((id / 64) as usize)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Whether every capability of `self` is in `other`.
    pub fn is_subset_of(&self, other: &[u64]) -> bool {
        self.0
            .iter()
            .enumerate()
            .all(|(i, &w)| w & other.get(i).copied().unwrap_or(0) == w)
    }

    /// The words.
    pub fn words(&self) -> &[u64] {
        &self.0
    }
}

/// The capabilities of a job of H.264 input transcoded to MPEG-TS H.264 renditions: AuthToken, H264, MPEGTS, and
/// the profile, GOP and fractional frame rate bits the profiles ask for.
pub fn job_capabilities(profiles: &[proto::VideoProfile]) -> proto::Capabilities {
    use proto::video_profile::Profile;
    let mut set = CapabilitySet::of([id::AUTH_TOKEN, id::H264]);
    for p in profiles {
        set.insert(if p.format == proto::video_profile::Format::Mp4 as i32 {
            id::MP4
        } else {
            id::MPEGTS
        });
        match Profile::try_from(p.profile) {
            Ok(Profile::H264Baseline) => set.insert(id::PROFILE_H264_BASELINE),
            Ok(Profile::H264Main) => set.insert(id::PROFILE_H264_MAIN),
            Ok(Profile::H264High) => set.insert(id::PROFILE_H264_HIGH),
            Ok(Profile::H264ConstrainedHigh) => set.insert(id::PROFILE_H264_CONSTRAINED_HIGH),
            Ok(Profile::EncoderDefault) | Err(_) => {}
        }
        if p.gop != 0 {
            set.insert(id::GOP);
        }
        if p.fps_den > 0 {
            set.insert(id::FRACTIONAL_FRAMERATES);
        }
    }
    proto::Capabilities {
        bitstring: set.0,
        ..Default::default()
    }
}

/// go-livepeer's `CompatibleWith`, from the side holding `ours` (the job) looking at `theirs` (the node): the
/// node's mandatory capabilities must all be in the job, and the node must have every capability the job needs.
pub fn compatible(job: &proto::Capabilities, node: &proto::Capabilities) -> bool {
    let job_set = CapabilitySet(job.bitstring.clone());
    let mandatories = CapabilitySet(node.mandatories.clone());
    mandatories.is_subset_of(&job_set.0) && job_set.is_subset_of(&node.bitstring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typical_job_is_0x1003() {
        let p = proto::VideoProfile {
            name: "P240p30fps16x9".into(),
            ..Default::default()
        };
        let caps = job_capabilities(&[p.clone(), p]);
        assert_eq!(caps.bitstring, [0x1003]);
    }

    #[test]
    fn compatibility_runs_both_ways() {
        let job = job_capabilities(&[proto::VideoProfile::default()]);
        let node = proto::Capabilities {
            bitstring: vec![0x4005FFF],
            mandatories: vec![1 << 12],
            ..Default::default()
        };
        assert!(compatible(&job, &node));
        let without_auth = proto::Capabilities {
            bitstring: vec![0x3],
            ..Default::default()
        };
        assert!(
            !compatible(&without_auth, &node),
            "the node's mandatory AuthToken"
        );
        let poor_node = proto::Capabilities {
            bitstring: vec![0x1001],
            ..Default::default()
        };
        assert!(!compatible(&job, &poor_node), "the node lacks MPEGTS");
        let mut high_word = CapabilitySet::default();
        high_word.insert(70);
        assert!(high_word.contains(70) && !high_word.contains(6));
        assert_eq!(high_word.words(), [0, 1 << 6]);
    }
}
