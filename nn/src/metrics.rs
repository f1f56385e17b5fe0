//! Classification metrics.

use rotor_engine::{Error, Result, Tensor};

/// How many rows of `[N, classes]` logits have their largest value at the label's class.
///
/// # Errors
/// If the logits are not `[N, classes]` or `labels` does not hold `N` classes.
pub fn count_correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let rows = match logits.shape() {
        [rows, classes] if *classes > 0 => *rows,
        _ => {
            return Err(Error::InvalidArgument {
                op: "count_correct",
                reason: format!("expected logits [N, classes], got {:?}", logits.shape()),
            });
        }
    };
    if labels.len() != rows {
        return Err(Error::InvalidArgument {
            op: "count_correct",
            reason: format!("{rows} rows of logits but {} labels", labels.len()),
        });
    }
    let predicted = logits.argmax(-1)?;
    Ok(predicted
        .iter()
        .zip(labels)
        .filter(|&(&p, &l)| p == l as usize)
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_whose_maximum_is_the_label() {
        let logits = Tensor::from_vec(vec![0.1, 0.9, 0.8, 0.2, 0.3, 0.7], &[3, 2]).unwrap();
        assert_eq!(count_correct(&logits, &[1, 0, 0]).unwrap(), 2);
        assert!(count_correct(&logits, &[1, 0]).is_err());
    }
}
