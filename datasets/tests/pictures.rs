//! Picture files turned into 28x28 normalised inputs.

use std::io::Cursor;

use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage};
use rotor_datasets::{
    DatasetError, Inversion, Normalization, PICTURE_SIDE, PictureOptions, Subset, decode_picture,
    load_mnist, load_picture,
};

fn encode(picture: &image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    picture.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// A `side x side` grey picture: background `background`, a centred vertical bar of
/// `stroke` a third of the width, as a "1" would be drawn.
fn bar(side: u32, background: u8, stroke: u8) -> GrayImage {
    GrayImage::from_fn(side, side, |x, _| {
        Luma([if (side / 3..2 * side / 3).contains(&x) {
            stroke
        } else {
            background
        }])
    })
}

fn unit(inversion: Inversion) -> PictureOptions {
    PictureOptions {
        inversion,
        normalization: Normalization::UNIT_INTERVAL,
    }
}

#[test]
fn a_28x28_png_keeps_its_grey_levels() {
    let picture = GrayImage::from_fn(28, 28, |x, y| Luma([((x * 9 + y) % 256) as u8]));
    let png = encode(&picture.clone().into(), ImageFormat::Png);
    let input = decode_picture(&png, &unit(Inversion::Never)).unwrap();
    assert_eq!(input.len(), PICTURE_SIDE * PICTURE_SIDE);
    for (got, &want) in input.iter().zip(picture.as_raw()) {
        assert!(
            (got - f32::from(want) / 255.0).abs() < 1e-6,
            "{got} vs {want}"
        );
    }
}

#[test]
fn dark_on_light_pictures_are_inverted_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.png");
    bar(84, 255, 0).save(&path).unwrap();

    let auto = load_picture(&path, &unit(Inversion::Auto)).unwrap();
    let always = load_picture(&path, &unit(Inversion::Always)).unwrap();
    let never = load_picture(&path, &unit(Inversion::Never)).unwrap();
    assert_eq!(auto, always);
    let at = |input: &[f32], row: usize, col: usize| input[row * PICTURE_SIDE + col];
    assert!(
        at(&auto, 0, 0) < 0.01 && at(&auto, 14, 14) > 0.99,
        "white bar on black"
    );
    assert!(
        at(&never, 0, 0) > 0.99 && at(&never, 14, 14) < 0.01,
        "as drawn"
    );
    assert!(auto.iter().chain(&never).all(|x| (0.0..=1.0).contains(x)));

    let light_on_dark = encode(&bar(84, 0, 255).into(), ImageFormat::Png);
    let kept = decode_picture(&light_on_dark, &unit(Inversion::Auto)).unwrap();
    for (x, y) in kept.iter().zip(&auto) {
        assert!(
            (x - y).abs() < 1e-5,
            "already MNIST-like, not inverted: {x} vs {y}"
        );
    }
}

#[test]
fn normalisation_applies_after_inversion() {
    let png = encode(&bar(28, 255, 0).into(), ImageFormat::Png);
    let options = PictureOptions::default();
    assert_eq!(options.inversion, Inversion::Auto);
    let input = decode_picture(&png, &options).unwrap();
    let background = (0.0 - 0.1307) / 0.3081;
    let stroke = (1.0 - 0.1307) / 0.3081;
    assert!((input[0] - background).abs() < 1e-5, "{}", input[0]);
    assert!((input[14 * PICTURE_SIDE + 14] - stroke).abs() < 1e-5);
}

#[test]
fn colour_jpeg_of_any_aspect_ratio_becomes_28x28() {
    let picture = RgbImage::from_fn(120, 45, |x, _| {
        if (50..70).contains(&x) {
            Rgb([250, 240, 230])
        } else {
            Rgb([10, 20, 30])
        }
    });
    let jpeg = encode(&picture.into(), ImageFormat::Jpeg);
    let input = decode_picture(&jpeg, &unit(Inversion::Auto)).unwrap();
    assert_eq!(input.len(), 784);
    let middle = input[14 * PICTURE_SIDE + 14];
    assert!(
        input[0] < 0.15 && middle > 0.85,
        "corner {} middle {middle}",
        input[0]
    );
}

#[test]
fn an_mnist_digit_drawn_dark_on_light_and_enlarged_comes_back() {
    let test = load_mnist(Subset::Test).unwrap();
    let digit = test.image(0);
    // NOTE: three times larger and dark on light, as a digit drawn on paper would be.
    let paper = GrayImage::from_fn(84, 84, |x, y| {
        Luma([255 - digit[(y / 3) as usize * 28 + (x / 3) as usize]])
    });
    let input = decode_picture(
        &encode(&paper.into(), ImageFormat::Png),
        &unit(Inversion::Auto),
    )
    .unwrap();
    let error: f32 = input
        .iter()
        .zip(digit)
        .map(|(x, &p)| (x - f32::from(p) / 255.0).abs())
        .sum::<f32>()
        / 784.0;
    assert!(error < 0.02, "mean absolute difference {error}");
}

#[test]
fn undecodable_pictures_are_errors() {
    let error = decode_picture(b"this is not a picture", &PictureOptions::default()).unwrap_err();
    assert!(matches!(error, DatasetError::Picture { .. }), "{error}");

    let png = encode(&bar(28, 0, 255).into(), ImageFormat::Png);
    let truncated = decode_picture(&png[..png.len() / 2], &PictureOptions::default());
    assert!(matches!(truncated, Err(DatasetError::Picture { .. })));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digit.png");
    std::fs::write(&path, b"\x89PNG\r\n\x1a\n but then nothing").unwrap();
    let error = load_picture(&path, &PictureOptions::default()).unwrap_err();
    assert!(matches!(error, DatasetError::Picture { .. }), "{error}");
    assert!(error.to_string().contains("digit.png"), "{error}");

    let missing = load_picture(dir.path().join("absent.png"), &PictureOptions::default());
    assert!(matches!(missing, Err(DatasetError::Io { .. })));
}
