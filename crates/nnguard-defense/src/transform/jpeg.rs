//! JPEG compression as a defence (Dziugaite, Ghahramani and Roy 2016, "A study of the effect
//! of JPG compression on adversarial images"; Guo et al. 2018, "Countering Adversarial
//! Images using Input Transformations"): every image is encoded at quality Q with a pure-Rust
//! baseline encoder and decoded again. Quantisation of the DCT coefficients and of the pixels
//! to 8 bits has a zero gradient almost everywhere, so attacks go through it with BPDA.

use jpeg_encoder::{ColorType, Encoder};
use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::{InputTransform, misfit};
use crate::DefenseError;

/// Settings of [`Jpeg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegConfig {
    /// Quality, 1 (smallest files) to 100.
    pub quality: u8,
}

impl Default for JpegConfig {
    /// Quality 75 (Guo et al.'s setting).
    fn default() -> Self {
        Self { quality: 75 }
    }
}

impl JpegConfig {
    /// Checks the quality and that the images are grey (1 channel) or RGB (3 channels) and
    /// at most 65,535 pixels on a side.
    pub fn build(self, shape: [usize; 3], bounds: (f32, f32)) -> Result<Jpeg, DefenseError> {
        if !(1..=100).contains(&self.quality) {
            return Err(DefenseError::config(
                "--transform",
                format!("jpeg: quality must be 1 to 100, got {}", self.quality),
            ));
        }
        let name = format!("jpeg:quality={}", self.quality);
        if shape[0] != 1 && shape[0] != 3 {
            return Err(misfit(
                &name,
                shape,
                format!(
                    "JPEG codes grey (1 channel) or RGB (3 channel) images, not {} channels",
                    shape[0]
                ),
            ));
        }
        let (Ok(height), Ok(width)) = (u16::try_from(shape[1]), u16::try_from(shape[2])) else {
            return Err(misfit(
                &name,
                shape,
                "JPEG images are at most 65,535 pixels on a side",
            ));
        };
        if height == 0 || width == 0 {
            return Err(misfit(&name, shape, "the images are empty"));
        }
        if !(bounds.0.is_finite() && bounds.1.is_finite() && bounds.0 < bounds.1) {
            return Err(DefenseError::config(
                "--transform",
                format!("jpeg: the input range {bounds:?} is empty"),
            ));
        }
        Ok(Jpeg {
            quality: self.quality,
            channels: shape[0],
            height,
            width,
            bounds,
        })
    }
}

/// JPEG compression and decompression at a fixed quality.
#[derive(Debug, Clone)]
pub struct Jpeg {
    quality: u8,
    channels: usize,
    height: u16,
    width: u16,
    bounds: (f32, f32),
}

impl Jpeg {
    /// Encodes and decodes one image given as 8-bit interleaved samples.
    pub fn round_trip(&self, samples: &[u8]) -> Result<Vec<u8>, DefenseError> {
        let codec = |reason: String| DefenseError::Codec {
            codec: "jpeg",
            reason,
        };
        let (color, space) = if self.channels == 1 {
            (ColorType::Luma, ColorSpace::Luma)
        } else {
            (ColorType::Rgb, ColorSpace::RGB)
        };
        let mut bytes = Vec::new();
        Encoder::new(&mut bytes, self.quality)
            .encode(samples, self.width, self.height, color)
            .map_err(|e| codec(e.to_string()))?;
        let options = DecoderOptions::default().jpeg_set_out_colorspace(space);
        let decoded = JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), options)
            .decode()
            .map_err(|e| codec(format!("{e:?}")))?;
        if decoded.len() != samples.len() {
            return Err(codec(format!(
                "decoded {} samples for an image of {}",
                decoded.len(),
                samples.len()
            )));
        }
        Ok(decoded)
    }

    fn compress(&self, x: Tensor<4>) -> Result<Tensor<4>, DefenseError> {
        let dims = x.dims();
        let device = x.device();
        let values = to_vec(x);
        let (lo, hi) = self.bounds;
        let scale = 255.0 / (hi - lo);
        let (c, hw) = (
            self.channels,
            usize::from(self.height) * usize::from(self.width),
        );
        let mut out = Vec::with_capacity(values.len());
        for image in values.chunks(c * hw) {
            // Planar (CHW) values to interleaved 8-bit samples, as the codec wants them.
            let mut samples = vec![0u8; c * hw];
            for ch in 0..c {
                for p in 0..hw {
                    let v = ((image[ch * hw + p].clamp(lo, hi) - lo) * scale).round();
                    samples[p * c + ch] = v as u8;
                }
            }
            let decoded = self.round_trip(&samples)?;
            let start = out.len();
            out.resize(start + c * hw, 0.0);
            for ch in 0..c {
                for p in 0..hw {
                    out[start + ch * hw + p] = f32::from(decoded[p * c + ch]) / scale + lo;
                }
            }
        }
        Ok(Tensor::from_data(TensorData::new(out, dims), &device))
    }
}

impl InputTransform for Jpeg {
    fn name(&self) -> String {
        format!("jpeg:quality={}", self.quality)
    }

    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let dims = x.dims();
        let device = x.device();
        // The shape was checked when the transform was built, so the codec does not fail on
        // valid input; if it does, the outputs are NaN, which every evaluation flags.
        self.compress(x).unwrap_or_else(|e| {
            tracing::error!("JPEG transform failed: {e}");
            Tensor::full(dims, f32::NAN, &device)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::cpu;

    #[test]
    fn round_trip_keeps_smooth_images_and_loses_high_frequencies() {
        let d = cpu();
        for channels in [1usize, 3] {
            let t = JpegConfig { quality: 90 }
                .build([channels, 16, 16], (0.0, 1.0))
                .unwrap();
            let n = channels * 256;
            let smooth: Vec<f32> = (0..n).map(|i| ((i % 16) as f32) / 15.0).collect();
            let x =
                Tensor::<4>::from_data(TensorData::new(smooth.clone(), [1, channels, 16, 16]), &d);
            let y = to_vec(t.apply(x));
            let err = y
                .iter()
                .zip(&smooth)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.08, "{channels} channels: max error {err}");
            // A one-pixel checkerboard is mostly high frequency: low quality loses much more
            // of it than high quality.
            let checker: Vec<f32> = (0..n).map(|i| ((i + i / 16) % 2) as f32).collect();
            let x =
                Tensor::<4>::from_data(TensorData::new(checker.clone(), [1, channels, 16, 16]), &d);
            let mean_err = |quality: u8| {
                let t = JpegConfig { quality }
                    .build([channels, 16, 16], (0.0, 1.0))
                    .unwrap();
                let y = to_vec(t.apply(x.clone()));
                y.iter()
                    .zip(&checker)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f32>()
                    / n as f32
            };
            let (low, high) = (mean_err(10), mean_err(95));
            assert!(
                low > 0.03 && low > 2.0 * high,
                "{channels} channels: {low} vs {high}"
            );
        }
    }
}
