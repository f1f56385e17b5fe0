//! Hand-made IDX inputs, valid and malformed: each malformation is one specific error
//! variant, never a panic and never an allocation of the declared size.

mod common;

use std::io::{self, Read};

use common::{gzip, idx_bytes};
use rotor_datasets::{DatasetError, IdxArray, ImageDataset, Origin};

fn parse(bytes: &[u8]) -> Result<IdxArray, DatasetError> {
    IdxArray::parse(bytes, Origin::memory())
}

/// Parses `raw` as given and gzipped: both must fail the same way.
fn parse_both(raw: &[u8]) -> [DatasetError; 2] {
    [
        parse(raw).expect_err("raw input should be rejected"),
        parse(&gzip(raw)).expect_err("gzipped input should be rejected"),
    ]
}

#[test]
fn valid_raw_and_gzip_inputs_parse_to_the_same_array() {
    let data: Vec<u8> = (0..18).collect();
    let raw = idx_bytes(&[2, 3, 3], &data);
    for bytes in [raw.clone(), gzip(&raw)] {
        let array = parse(&bytes).expect("valid input");
        assert_eq!(array.dims(), [2, 3, 3]);
        assert_eq!(array.data(), data.as_slice());
    }
}

#[test]
fn every_rank_from_one_to_four_parses_and_zero_sized_dimensions_are_empty() {
    for rank in 1..=4u32 {
        let dims: Vec<u32> = (2..2 + rank).collect();
        let len = dims.iter().product::<u32>() as usize;
        let array = parse(&idx_bytes(&dims, &vec![7; len])).expect("valid input");
        assert_eq!(array.dims().len(), rank as usize);
        assert_eq!(array.data().len(), len);
    }
    let empty = parse(&idx_bytes(&[0, 28, 28], &[])).expect("valid input");
    assert_eq!(empty.dims(), [0, 28, 28]);
    assert!(empty.data().is_empty());
}

#[test]
fn concatenated_gzip_members_form_one_stream() {
    let raw = idx_bytes(&[6], &[1, 2, 3, 4, 5, 6]);
    let mut bytes = gzip(&raw[..7]);
    bytes.extend(gzip(&raw[7..]));
    assert_eq!(
        parse(&bytes).expect("valid input").data(),
        [1, 2, 3, 4, 5, 6]
    );
}

#[test]
fn empty_input_is_empty() {
    assert!(matches!(parse(&[]), Err(DatasetError::Empty { .. })));
    assert!(matches!(parse(&gzip(&[])), Err(DatasetError::Empty { .. })));
}

#[test]
fn wrong_magic_is_bad_magic_with_the_bytes_found() {
    for error in parse_both(&[0x12, 0x34, 0x08, 0x01, 0, 0, 0, 0]) {
        assert!(
            matches!(
                error,
                DatasetError::BadMagic {
                    found: [0x12, 0x34],
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("expected 00 00, found 12 34"),
            "{error}"
        );
    }
}

#[test]
fn types_other_than_unsigned_byte_are_unsupported() {
    for code in [0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF] {
        for error in parse_both(&[0, 0, code, 1, 0, 0, 0, 1, 0]) {
            assert!(
                matches!(error, DatasetError::UnsupportedDataType { code: found, .. } if found == code),
                "{error}"
            );
        }
    }
    let message = parse(&[0, 0, 0x0D, 1, 0, 0, 0, 0]).unwrap_err().to_string();
    assert!(message.contains("found 0x0d (32-bit float)"), "{message}");
}

#[test]
fn rank_zero_or_above_four_is_a_bad_rank() {
    for rank in [0u8, 5, 255] {
        let mut bytes = vec![0, 0, 0x08, rank];
        bytes.extend(std::iter::repeat_n(0, 4 * usize::from(rank)));
        for error in parse_both(&bytes) {
            assert!(matches!(error, DatasetError::BadRank { rank: found, .. } if found == rank));
        }
    }
}

#[test]
fn truncated_header_reports_expected_and_found_lengths() {
    for (bytes, expected, found) in [
        (vec![0u8], 4, 1),
        (vec![0, 0, 0x08], 4, 3),
        (vec![0, 0, 0x08, 3], 16, 4),
        (vec![0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0], 16, 10),
    ] {
        for error in parse_both(&bytes) {
            assert!(
                matches!(error, DatasetError::TruncatedHeader { expected: e, found: f, .. }
                    if e == expected && f == found),
                "{error}"
            );
        }
    }
}

#[test]
fn truncated_data_reports_offset_and_sizes() {
    let raw = idx_bytes(&[2, 3, 3], &[1; 10]);
    for error in parse_both(&raw) {
        assert!(
            matches!(
                error,
                DatasetError::TruncatedData {
                    offset: 26,
                    expected: 18,
                    found: 10,
                    ..
                }
            ),
            "{error}"
        );
    }
}

#[cfg(target_pointer_width = "64")]
#[test]
fn dimensions_far_beyond_the_input_are_rejected_before_allocating() {
    // NOTE: (2^32 - 1)^2 bytes fits in usize on 64-bit targets; allocating it would abort.
    let raw = idx_bytes(&[u32::MAX, u32::MAX], &[0; 3]);
    assert!(matches!(
        parse(&raw),
        Err(DatasetError::TruncatedData { found: 3, .. })
    ));
    let mnist_sized = idx_bytes(&[60_000, 28, 28], &[0; 100]);
    assert!(matches!(
        parse(&mnist_sized),
        Err(DatasetError::TruncatedData {
            expected: 47_040_000,
            found: 100,
            ..
        })
    ));
}

#[test]
fn dimensions_whose_product_overflows_usize_are_a_size_overflow() {
    let dims = [u32::MAX, u32::MAX, u32::MAX, 2];
    for error in parse_both(&idx_bytes(&dims, &[])) {
        assert!(
            matches!(&error, DatasetError::SizeOverflow { dims: found, .. } if found == &dims),
            "{error}"
        );
    }
}

#[test]
fn trailing_bytes_after_the_data_are_rejected() {
    let raw = idx_bytes(&[4], &[1, 2, 3, 4, 5, 6]);
    for error in parse_both(&raw) {
        assert!(
            matches!(
                error,
                DatasetError::TrailingData {
                    offset: 12,
                    expected: 4,
                    extra: 2,
                    ..
                }
            ),
            "{error}"
        );
    }
}

#[test]
fn corrupt_gzip_streams_are_gzip_errors() {
    let valid = gzip(&idx_bytes(&[3, 4], &[9; 12]));
    let mut garbage = vec![0x1f, 0x8b];
    garbage.extend_from_slice(b"definitely not deflate data");
    let cut = valid[..valid.len() / 2].to_vec();
    let mut bad_checksum = valid.clone();
    let crc_at = bad_checksum.len() - 8;
    bad_checksum[crc_at] ^= 0xFF;
    let mut junk_after = valid.clone();
    junk_after.extend_from_slice(b"junk");
    for bytes in [garbage, cut, bad_checksum, junk_after, vec![0x1f, 0x8b]] {
        let error = parse(&bytes).expect_err("corrupt gzip");
        assert!(matches!(error, DatasetError::Gzip { .. }), "{error}");
    }
}

#[test]
fn gzip_declaring_more_than_its_size_can_hold_is_rejected_before_decompressing() {
    let bomb = gzip(&idx_bytes(&[1 << 30, 28, 28], &[]));
    assert!(bomb.len() < 100);
    let error = parse(&bomb).expect_err("declared size is impossible");
    assert!(
        matches!(error, DatasetError::DeclaredSizeExceedsCompressed { declared, compressed, .. }
            if declared == 784 << 30 && compressed == bomb.len()),
        "{error}"
    );
}

#[test]
fn gzip_decompressing_far_past_its_declared_size_stops_early() {
    let mut raw = idx_bytes(&[4], &[1, 2, 3, 4]);
    raw.resize(8 << 20, 0);
    let bomb = gzip(&raw);
    assert!(bomb.len() < 20_000, "8 MiB of zeros compress well");
    let error = parse(&bomb).expect_err("content exceeds its declaration");
    assert!(
        matches!(error, DatasetError::DecompressedTooLarge { expected: 12, limit, .. }
            if limit < 12 + 8192),
        "{error}"
    );
}

#[test]
fn label_and_image_counts_must_agree() {
    let images = parse(&idx_bytes(&[2, 2, 2], &[0; 8])).unwrap();
    let labels = parse(&idx_bytes(&[3], &[0, 1, 2])).unwrap();
    let error = ImageDataset::from_idx(images, labels).expect_err("2 images, 3 labels");
    assert!(
        matches!(
            error,
            DatasetError::CountMismatch {
                images: 2,
                labels: 3,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn labels_are_checked_against_the_class_count() {
    let images = parse(&idx_bytes(&[3, 1, 2], &[0; 6])).unwrap();
    let labels =
        IdxArray::parse(&idx_bytes(&[3], &[9, 10, 0]), Origin::file("labels.idx1")).unwrap();
    let error = ImageDataset::from_idx(images.clone(), labels.clone()).unwrap_err();
    assert!(
        matches!(
            error,
            DatasetError::LabelOutOfRange {
                index: 1,
                label: 10,
                classes: 10,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("labels.idx1"), "{error}");
    let dataset = ImageDataset::from_idx_with_classes(images, labels, 11).unwrap();
    assert_eq!(dataset.num_classes(), 11);
}

#[test]
fn images_and_labels_need_their_ranks() {
    let flat = parse(&idx_bytes(&[8], &[0; 8])).unwrap();
    let cube = parse(&idx_bytes(&[2, 2, 2], &[0; 8])).unwrap();
    let as_images = ImageDataset::from_idx(flat.clone(), flat.clone()).unwrap_err();
    assert!(
        matches!(as_images, DatasetError::UnexpectedShape { .. }),
        "{as_images}"
    );
    let as_labels = ImageDataset::from_idx(cube.clone(), cube).unwrap_err();
    assert!(
        matches!(as_labels, DatasetError::UnexpectedShape { .. }),
        "{as_labels}"
    );
    let no_pixels = parse(&idx_bytes(&[3, 0, 5], &[])).unwrap();
    let labels = parse(&idx_bytes(&[3], &[0; 3])).unwrap();
    let error = ImageDataset::from_idx(no_pixels, labels).unwrap_err();
    assert!(
        matches!(error, DatasetError::UnexpectedShape { .. }),
        "{error}"
    );
}

#[test]
fn errors_from_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-idx1-ubyte");
    std::fs::write(&path, [0xAB, 0xCD, 0x08, 0x01]).unwrap();
    let message = IdxArray::open(&path).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    let missing = IdxArray::open(dir.path().join("absent")).unwrap_err();
    assert!(matches!(missing, DatasetError::Io { .. }), "{missing}");
    assert!(missing.to_string().contains("absent"), "{missing}");
}

#[test]
fn a_failing_reader_is_an_io_error() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("device unplugged"))
        }
    }
    let error = IdxArray::read(Failing, Origin::memory()).unwrap_err();
    assert!(matches!(error, DatasetError::Io { .. }), "{error}");
    let from_reader = IdxArray::read(&idx_bytes(&[2], &[4, 5])[..], Origin::memory()).unwrap();
    assert_eq!(from_reader.data(), [4, 5]);
}
