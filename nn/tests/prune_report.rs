//! The pruning report: JSON that parses back with totals equal to the sum of the rows,
//! Markdown and pictures (PNG, or SVG with real text) written next to a checkpoint, with
//! robustness when measured.

use std::path::Path;

use rotor_engine::{SeedableRng, SeededRng};
use rotor_nn::adversarial::{Attack, Pgd, RobustPoint, Robustness, RobustnessCurve};
use rotor_nn::prune::{self, GateKind, PrunePlan, Savings, SweepPoint};
use rotor_nn::report::{
    Accuracies, GateHistogram, ImageFormat, PruneReport, ReportPaths, RobustnessReport, RunReport,
    Throughput,
};
use rotor_nn::{Activation, Layer, MnistNet};

fn run_report() -> RunReport {
    let mut rng = SeededRng::seed_from_u64(3);
    let mut net = MnistNet::with_widths(Activation::Rotated, [8, 16, 32], &mut rng).unwrap();
    for (name, layer) in net.as_sequential_mut().layers_mut() {
        if let (Layer::RotatedRelu(act), "act2" | "act3") = (layer, name.as_str()) {
            act.slope
                .update(|a| a[..5].iter_mut().for_each(|v| *v *= 0.05));
        }
    }
    let net = net.as_sequential();
    let magnitudes = prune::gate_magnitudes(net, GateKind::Slope)
        .into_iter()
        .flat_map(|(_, m)| m);
    let choice = prune::choose_zeta(magnitudes, 1.0, 4, 0.95, 0.1, |zeta| {
        let plan = PrunePlan::new(net, GateKind::Slope, zeta)?;
        let savings = Savings::new(net, &plan, &[1, 28, 28])?;
        Ok::<_, rotor_engine::Error>(SweepPoint {
            zeta,
            // Pruning the channels trained to small slopes costs nothing; more does.
            accuracy: if zeta < 0.1 { 0.95 } else { 0.90 },
            compute_saving_percent: savings.compute_saving_percent(),
            memory_saving_percent: savings.memory_saving_percent(),
        })
    })
    .unwrap();
    assert!(choice.zeta > 0.0 && choice.zeta < 0.1, "{choice:?}");
    let plan = PrunePlan::new(net, GateKind::Slope, choice.zeta).unwrap();
    assert!(plan.removes_anything());
    RunReport {
        method: "rotated ReLU".into(),
        gate: Some(GateKind::Slope),
        zeta: choice.zeta,
        choice: Some(choice),
        accuracy: Accuracies {
            dense: 0.95,
            pruned: 0.949,
            finetuned: Some(0.951),
        },
        savings: Savings::new(net, &plan, &[1, 28, 28]).unwrap(),
        gates: prune::gate_magnitudes(net, GateKind::Slope)
            .into_iter()
            .map(|(layer, magnitudes)| GateHistogram { layer, magnitudes })
            .collect(),
        throughput: Some(Throughput {
            images: 10_000,
            batch_size: 500,
            threads: 2,
            rounds: 3,
            dense_images_per_second: 1000.0,
            compacted_images_per_second: 1500.0,
        }),
        robustness: None,
    }
}

/// Measurements of one network under FGSM and PGD-10 at two budgets.
fn robustness(clean: f64, robust: [f64; 4]) -> Robustness {
    let curve = |attack, accuracies: &[f64], seconds| RobustnessCurve {
        attack,
        points: [0.1, 0.3]
            .iter()
            .zip(accuracies)
            .map(|(&epsilon, &accuracy)| RobustPoint {
                epsilon,
                accuracy,
                seconds_per_image: seconds,
            })
            .collect(),
    };
    Robustness {
        images: 10_000,
        clean_accuracy: clean,
        seconds_per_gradient_pass: 1e-4,
        curves: vec![
            curve(Attack::Fgsm, &robust[..2], 1.2e-4),
            curve(Attack::Pgd(Pgd::default()), &robust[2..], 1.05e-3),
        ],
    }
}

#[test]
fn json_parses_back_and_totals_are_row_sums() {
    let report = PruneReport {
        model: "MnistNet".into(),
        dataset: "MNIST".into(),
        runs: vec![run_report()],
    };
    let json = report.to_json().unwrap();
    let back = PruneReport::from_json(&json).unwrap();
    assert_eq!(back, report);

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let savings = &value["runs"][0]["savings"];
    for field in [
        "params_before",
        "params_after",
        "flops_before",
        "flops_after",
    ] {
        let sum: u64 = savings["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_u64().unwrap())
            .sum();
        assert_eq!(savings["total"][field].as_u64().unwrap(), sum, "{field}");
    }
    assert!(savings["total"]["params_after"].as_u64() < savings["total"]["params_before"].as_u64());
}

#[test]
fn writes_json_markdown_and_png_next_to_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("mnist.safetensors");
    let report = PruneReport {
        model: "MnistNet".into(),
        dataset: "MNIST".into(),
        runs: vec![run_report()],
    };
    let paths = report.write(&checkpoint).unwrap();
    assert_eq!(paths, ReportPaths::next_to(&checkpoint));
    assert_eq!(paths.json, dir.path().join("mnist.report.json"));
    let json = std::fs::read_to_string(&paths.json).unwrap();
    assert_eq!(PruneReport::from_json(&json).unwrap(), report);
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("| act2 | RotatedRelu |"), "{md}");
    assert!(md.contains("| total |"));
    assert!(
        md.contains("dense 1000 images/s, compacted 1500 images/s (1.50x)"),
        "{md}"
    );
    // The Markdown shows the picture written beside it by its relative name.
    assert!(md.contains("](mnist.report.png)"), "{md}");
    // Three gate layers and one sweep: two rows of two panels under the headline.
    assert_drawn(&paths.png, (1120, 44 + 2 * 420));
    assert!(!paths.svg.exists());
    assert!(!md.contains("Robustness"), "{md}");
    assert!(!paths.robustness_png.exists());
}

/// The PNG at `path` has the given size, and both its top band (the titles) and the rest
/// (axes, ticks, lines and legends) hold dark pixels: not a blank canvas.
fn assert_drawn(path: &Path, size: (u32, u32)) {
    let png = std::fs::read(path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let image = image::load_from_memory(&png).unwrap().to_luma8();
    assert_eq!(image.dimensions(), size, "{}", path.display());
    let dark = |x: std::ops::Range<u32>, y: std::ops::Range<u32>| {
        y.flat_map(|y| x.clone().map(move |x| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0[0] < 128)
            .count()
    };
    assert!(
        dark(0..size.0, 0..80) > 400,
        "no titles in {}",
        path.display()
    );
    assert!(
        dark(0..size.0, 80..size.1) > 4000,
        "no plots in {}",
        path.display()
    );
}

/// The text of every `<text>` element of an SVG.
fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
        .collect()
}

/// A report of the rotated-ReLU run (robustness dense and pruned) and a run of `second`
/// (robustness of the dense network only).
fn robust_report(second: &str) -> PruneReport {
    let mut rotated = run_report();
    rotated.robustness = Some(RobustnessReport {
        dense: robustness(0.99, [0.9, 0.4, 0.8, 0.05]),
        pruned: Some(robustness(0.98, [0.85, 0.3, 0.7, 0.01])),
    });
    let mut other = run_report();
    other.method = second.into();
    other.robustness = Some(RobustnessReport {
        dense: robustness(0.97, [0.8, 0.2, 0.6, 0.0]),
        pruned: None,
    });
    PruneReport {
        model: "MnistNet".into(),
        dataset: "MNIST".into(),
        runs: vec![rotated, other],
    }
}

#[test]
fn writes_svg_with_titles_axes_and_legends_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("mnist.safetensors");
    let report = robust_report("Network Slimming");
    let paths = report.write_with(&checkpoint, ImageFormat::Svg).unwrap();
    assert_eq!(paths, ReportPaths::next_to(&checkpoint));
    assert_eq!(paths.figure(ImageFormat::Svg), paths.svg);
    assert!(!paths.png.exists() && !paths.robustness_png.exists());
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("](mnist.report.svg)"), "{md}");
    assert!(md.contains("](mnist.robustness.svg)"), "{md}");

    let svg = std::fs::read_to_string(&paths.svg).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    let texts = svg_texts(&svg);
    for expected in [
        "Pruning report: MnistNet on MNIST",
        "rotated ReLU: gates of act1",
        "rotated ReLU: gates of act2",
        "rotated ReLU: gates of act3",
        "rotated ReLU: threshold sweep",
        "Network Slimming: threshold sweep",
        "gate magnitude |slope|",
        "channels",
        "threshold zeta",
        "validation accuracy (%)",
        "saving (%)",
        "unpruned accuracy",
        "validation accuracy",
        "computation saving (right)",
        "memory saving (right)",
    ] {
        assert!(texts.contains(&expected), "{expected:?} not in {texts:?}");
    }
    // The histograms' and sweeps' legends name the threshold; tick labels are text too.
    assert!(
        texts.iter().any(|t| t.starts_with("chosen zeta = ")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.ends_with(" removed")), "{texts:?}");
    assert!(texts.contains(&"100"), "{texts:?}");

    let svg = std::fs::read_to_string(&paths.robustness_svg).unwrap();
    let texts = svg_texts(&svg);
    for expected in [
        "FGSM (L-infinity, untargeted)",
        "PGD-10 (L-infinity, untargeted)",
        "epsilon (data units)",
        "accuracy (%)",
        "rotated ReLU, dense",
        "rotated ReLU, pruned",
        "Network Slimming, dense",
    ] {
        assert!(texts.contains(&expected), "{expected:?} not in {texts:?}");
    }
    assert!(!texts.contains(&"Network Slimming, pruned"), "{texts:?}");
}

#[test]
fn robustness_is_tabulated_and_drawn_for_each_network() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("mnist.safetensors");
    let report = robust_report("ReLU");
    assert!(report.has_robustness());
    let paths = report.write(&checkpoint).unwrap();
    assert_eq!(
        PruneReport::from_json(&std::fs::read_to_string(&paths.json).unwrap()).unwrap(),
        report
    );
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(
        md.contains("| method | network | clean | FGSM 0.1 | FGSM 0.3 | PGD-10 0.1 | PGD-10 0.3 |"),
        "{md}"
    );
    assert!(
        md.contains(
            "| rotated ReLU | pruned, fine-tuned | 98.00% | 85.00% | 30.00% | 70.00% | 1.00% |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| ReLU | dense | 97.00% | 80.00% | 20.00% | 60.00% | 0.00% |"),
        "{md}"
    );
    assert!(md.contains("FGSM 1.2 / 1.2; PGD-10 10.5 / 10.5"), "{md}");
    assert!(md.contains("](mnist.robustness.png)"), "{md}");
    assert_drawn(&paths.robustness_png, (1120, 440));
    // Three gate layers and two sweeps.
    assert_drawn(&paths.png, (1120, 44 + 3 * 420));
}
