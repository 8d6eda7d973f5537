//! A self-contained HTML page for a [`Report`]: headline numbers with the validity checks
//! beside them, the accuracy-vs-ε curve (SVG drawn with `plotters`), per-attack results and
//! a grid of clean, adversarial and perturbation images (inline PNG). No external assets.

use plotters::prelude::*;

use crate::checks::Status;
use crate::report::Report;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// The robustness curve as an SVG document.
pub fn curve_svg(report: &Report) -> String {
    let mut svg = String::new();
    let drawn = draw_curve(report, &mut svg);
    if let Err(e) = drawn {
        tracing::warn!("cannot draw the robustness curve: {e}");
        return String::new();
    }
    svg
}

fn draw_curve(report: &Report, svg: &mut String) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (640, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let pts: Vec<(f32, f32)> = report
        .summary
        .curve
        .iter()
        .map(|p| (p.eps, 100.0 * p.robust_accuracy as f32))
        .collect();
    let xmax = pts.iter().map(|p| p.0).fold(0.0f32, f32::max).max(1e-3) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Robust accuracy vs ε ({})", report.norm),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f32..xmax, 0f32..100f32)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("ε")
        .y_desc("accuracy (%)")
        .draw()
        .map_err(|e| e.to_string())?;
    let clean = 100.0 * report.summary.clean_accuracy as f32;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, clean), (xmax, clean)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label("clean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.4)));
    let mut line = vec![(0.0, clean)];
    line.extend(pts.iter().copied());
    chart
        .draw_series(LineSeries::new(line, BLUE.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("robust")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
        .map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let s = &report.summary;
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>nnguard robustness report: {}</title>\n",
        esc(&report.model)
    ));
    h.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
         .ok{color:#1a7f37}.skip{color:#777}.WARN{color:#9a6700;font-weight:bold}.FAIL{color:#cf222e;font-weight:bold}\
         .big{font-size:1.6em}img{image-rendering:pixelated;width:84px;height:84px;border:1px solid #ddd}\
         .note{color:#555;font-size:.9em}</style></head><body>\n",
    );
    h.push_str(&format!(
        "<h1>Robustness report</h1>\n<p>Model <code>{}</code> on <code>{}</code>; threat model {} with ε ∈ {:?}; {} inputs{}.</p>\n",
        esc(&report.model),
        esc(&report.data),
        report.norm,
        report.eps,
        s.inputs,
        if report.complete {
            String::new()
        } else {
            format!(
                " — <span class=\"FAIL\">incomplete: {}</span>",
                esc(report.stopped.as_deref().unwrap_or("stopped early"))
            )
        }
    ));
    if let Some(p) = report.headline() {
        h.push_str(&format!(
            "<p class=\"big\">clean accuracy {} · robust accuracy {} at ε={} · <span class=\"{}\">{}</span></p>\n",
            pct(s.clean_accuracy),
            pct(p.robust_accuracy),
            p.eps,
            if s.checks.failed > 0 {
                "FAIL"
            } else if s.checks.warnings > 0 {
                "WARN"
            } else {
                "ok"
            },
            esc(&report.checks_line())
        ));
    }
    h.push_str("<h2>Validity checks</h2>\n<table><tr><th>check</th><th>status</th><th>finding</th><th>action</th></tr>\n");
    for c in &report.checks {
        h.push_str(&format!(
            "<tr><td>{}<br><span class=\"note\">{}</span></td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.title),
            esc(&c.id),
            c.status.label(),
            c.status.label(),
            esc(&c.detail),
            esc(c.action.as_deref().unwrap_or(""))
        ));
    }
    h.push_str("</table>\n<h2>Robustness curve</h2>\n");
    h.push_str(&curve_svg(report));
    h.push_str(&format!(
        "\n<p class=\"note\">monotone in ε: {}</p>\n",
        if s.monotone { "yes" } else { "<b>no</b>" }
    ));
    h.push_str("<h2>Per attack</h2>\n<table><tr><th>ε</th><th>attack</th><th>broke</th><th>robust after</th><th>queries</th><th>median size</th><th>seconds</th></tr>\n");
    for (ei, p) in s.curve.iter().enumerate() {
        for step in &p.after_attack {
            let st = report
                .attack_stats
                .iter()
                .find(|a| a.eps_index == ei && a.attack == step.attack);
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>\n",
                p.eps,
                esc(&step.attack),
                step.broken,
                pct(step.robust_accuracy),
                st.map_or(0, |a| a.queries),
                if step.attack == "repeated-evaluation" { String::new() } else { format!("{:.4}", p.perturbation.median) },
                st.map_or(0.0, |a| a.seconds)
            ));
        }
    }
    h.push_str("</table>\n");
    let stand_ins: Vec<String> = report
        .attacks
        .iter()
        .filter(|a| a.stand_in)
        .map(|a| format!("{} ran in place of {}", a.name, a.role))
        .collect();
    if !stand_ins.is_empty() {
        h.push_str(&format!(
            "<p class=\"note\">{}.</p>\n",
            esc(&stand_ins.join("; "))
        ));
    }
    if !report.examples.is_empty() {
        h.push_str("<h2>Adversarial examples</h2>\n<table><tr><th>input</th><th>clean</th><th>adversarial</th><th>perturbation</th></tr>\n");
        for e in &report.examples {
            h.push_str(&format!(
                "<tr><td>#{}<br>label {} → {}<br>{} ({:.4})</td><td><img alt=\"clean\" src=\"data:image/png;base64,{}\"></td><td><img alt=\"adversarial\" src=\"data:image/png;base64,{}\"></td><td><img alt=\"perturbation\" src=\"data:image/png;base64,{}\"></td></tr>\n",
                e.index,
                e.label,
                e.adversarial,
                esc(&e.attack),
                e.distance,
                e.clean_png,
                e.adversarial_png,
                e.perturbation_png
            ));
        }
        h.push_str("</table>\n");
    }
    h.push_str(&format!(
        "<p class=\"note\">nnguard {} · report schema {} · {:.1} s</p>\n</body></html>\n",
        esc(&report.nnguard_version),
        esc(&report.schema),
        report.timings.total_seconds
    ));
    h
}

/// Whether any check failed (for exit codes).
pub fn any_failed(report: &Report) -> bool {
    report.checks.iter().any(|c| c.status == Status::Failed)
}
