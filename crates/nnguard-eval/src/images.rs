//! Small PNG images of inputs and perturbations for the HTML report.

use base64::Engine;

/// Encodes one CHW image with values in `bounds` as a base64 PNG (grey for one channel,
/// RGB for three; other channel counts show the first channel).
pub fn png_base64(chw: &[f32], shape: [usize; 3], bounds: (f32, f32)) -> String {
    let [c, h, w] = shape;
    let span = (bounds.1 - bounds.0).max(f32::MIN_POSITIVE);
    let level = |v: f32| (((v - bounds.0) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
    let plane = h * w;
    let (color, pixels): (png::ColorType, Vec<u8>) = if c == 3 {
        (
            png::ColorType::Rgb,
            (0..plane)
                .flat_map(|p| (0..3).map(move |ch| (ch, p)))
                .map(|(ch, p)| level(chw.get(ch * plane + p).copied().unwrap_or(0.0)))
                .collect(),
        )
    } else {
        (
            png::ColorType::Grayscale,
            (0..plane)
                .map(|p| level(chw.get(p).copied().unwrap_or(0.0)))
                .collect(),
        )
    };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let written = enc
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&pixels));
        if let Err(e) = written {
            tracing::warn!("cannot encode an example image: {e}");
            return String::new();
        }
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// A perturbation scaled so that its largest entry spans the grey range around mid-grey.
pub fn perturbation_base64(delta: &[f32], shape: [usize; 3]) -> String {
    let m = delta.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scaled: Vec<f32> = delta
        .iter()
        .map(|v| if m > 0.0 { 0.5 + 0.5 * v / m } else { 0.5 })
        .collect();
    png_base64(&scaled, shape, (0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_decodable_png() {
        let b64 = png_base64(&[0.0, 0.5, 1.0, 0.25], [1, 2, 2], (0.0, 1.0));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2, 2));
        assert_eq!(&buf[..4], &[0, 128, 255, 64]);
    }
}
