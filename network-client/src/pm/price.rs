//! Prices per pixel as exact rationals (§5) and the gateway's fee estimate for a segment (§4.5 step 1).
//!
//! Orchestrators quote `{pricePerUnit, pixelsPerUnit}` and, with auto-adjusted prices, send reduced fractions such
//! as `{2021, 2}`; comparing or multiplying them as floats would disagree with the orchestrator's own `big.Rat`
//! accounting, so everything here stays rational.

use std::time::Duration;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, Zero};

/// The orchestrator's quote as it appears in `OrchestratorInfo.price_info`. Kept verbatim because the gateway
/// echoes it as `Payment.expected_price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PriceInfo {
    /// Wei per unit.
    pub price_per_unit: i64,
    /// Pixels per unit; must be positive.
    pub pixels_per_unit: i64,
}

/// Why a quoted price cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PriceError {
    /// `pixelsPerUnit` is zero or negative.
    #[error("pixelsPerUnit must be positive, got {0}")]
    BadPixelsPerUnit(i64),
    /// `pricePerUnit` is negative.
    #[error("pricePerUnit must not be negative, got {0}")]
    NegativePrice(i64),
}

/// An exact price in wei per pixel, always in lowest terms (the orchestrator's recipientRand HMAC covers the
/// normalised numerator and denominator).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PricePerPixel(BigRational);

impl PricePerPixel {
    /// The price of a quote, refusing the quotes go-livepeer refuses.
    pub fn from_price_info(info: &PriceInfo) -> Result<Self, PriceError> {
        if info.pixels_per_unit <= 0 {
            return Err(PriceError::BadPixelsPerUnit(info.pixels_per_unit));
        }
        if info.price_per_unit < 0 {
            return Err(PriceError::NegativePrice(info.price_per_unit));
        }
        Ok(Self(BigRational::new(
            BigInt::from(info.price_per_unit),
            BigInt::from(info.pixels_per_unit),
        )))
    }

    /// A free price (off-chain orchestrators, tests).
    pub fn zero() -> Self {
        Self(BigRational::zero())
    }

    /// The rational value in lowest terms.
    pub fn as_rational(&self) -> &BigRational {
        &self.0
    }

    /// Whether the orchestrator works for free.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// The price of `pixels` output pixels in wei.
    pub fn cost_of(&self, pixels: u64) -> BigRational {
        &self.0 * BigInt::from(pixels)
    }
}

/// One requested output rendition, as far as billing is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutputProfile {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate numerator; 0 means "keep the source rate" (passthrough).
    pub fps: u32,
    /// Frame rate denominator; 0 means 1.
    pub fps_den: u32,
}

/// Frame rate the estimate assumes when a profile keeps the source rate: the source rate is unknown before
/// decoding, and over-estimating only costs an extra ticket whose value carries over.
pub const PASSTHROUGH_FPS: u32 = 60;

impl OutputProfile {
    /// `ceil(fps / fpsDen)`, with passthrough counted as [`PASSTHROUGH_FPS`].
    pub fn billed_fps(&self) -> u64 {
        if self.fps == 0 {
            return u64::from(PASSTHROUGH_FPS);
        }
        let den = if self.fps_den == 0 { 1 } else { self.fps_den };
        u64::from(self.fps).div_ceil(u64::from(den))
    }
}

/// Whole seconds, rounded up: the estimate bills a started second as a full one.
pub fn billed_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The estimated output pixels of a segment: `Σ width·height·ceil(fps)·ceil(duration)`. The input is not billed.
pub fn estimate_pixels(profiles: &[OutputProfile], duration: Duration) -> BigInt {
    let seconds = BigInt::from(billed_seconds(duration));
    profiles
        .iter()
        .map(|p| BigInt::from(u64::from(p.width) * u64::from(p.height)) * p.billed_fps() * &seconds)
        .sum()
}

/// The margin go-livepeer adds to the pixel estimate (`× 1.02`), as an exact ratio.
pub fn estimate_margin() -> BigRational {
    BigRational::new(BigInt::from(102), BigInt::from(100))
}

/// The fee the gateway pre-pays for a segment: estimated pixels × 1.02 × price.
pub fn estimate_fee(
    profiles: &[OutputProfile],
    duration: Duration,
    price: &PricePerPixel,
) -> BigRational {
    let fee = BigRational::from_integer(estimate_pixels(profiles, duration))
        * estimate_margin()
        * price.as_rational();
    debug_assert!(!fee.is_negative());
    fee
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_rounding() {
        let p = |fps, fps_den| OutputProfile {
            width: 1,
            height: 1,
            fps,
            fps_den,
        };
        assert_eq!(p(30, 0).billed_fps(), 30);
        assert_eq!(p(30, 1).billed_fps(), 30);
        assert_eq!(p(30000, 1001).billed_fps(), 30);
        assert_eq!(p(60000, 1001).billed_fps(), 60);
        assert_eq!(p(25, 2).billed_fps(), 13);
        assert_eq!(p(0, 0).billed_fps(), 60);
        assert_eq!(p(0, 1001).billed_fps(), 60);
    }

    #[test]
    fn duration_rounding() {
        assert_eq!(billed_seconds(Duration::ZERO), 0);
        assert_eq!(billed_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(billed_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(billed_seconds(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn prices_are_normalised_and_validated() {
        let a = PricePerPixel::from_price_info(&PriceInfo {
            price_per_unit: 2020,
            pixels_per_unit: 2,
        })
        .unwrap();
        let b = PricePerPixel::from_price_info(&PriceInfo {
            price_per_unit: 1010,
            pixels_per_unit: 1,
        })
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(*a.as_rational().denom(), BigInt::from(1));
        assert!(
            PricePerPixel::from_price_info(&PriceInfo {
                price_per_unit: 2021,
                pixels_per_unit: 2
            })
            .unwrap()
                > a
        );
        assert_eq!(
            PricePerPixel::from_price_info(&PriceInfo {
                price_per_unit: 1,
                pixels_per_unit: 0
            }),
            Err(PriceError::BadPixelsPerUnit(0))
        );
        assert_eq!(
            PricePerPixel::from_price_info(&PriceInfo {
                price_per_unit: -1,
                pixels_per_unit: 1
            }),
            Err(PriceError::NegativePrice(-1))
        );
    }
}
