//! Johnson's (2000) relative weights: how much of the outcome's explained variance (R²) each
//! correlated predictor accounts for.
//!
//! Ordinary regression coefficients of correlated ratings are unstable and can even take the
//! wrong sign: a customer who rates speed highly tends to rate reliability highly too, and the
//! regression cannot tell which one moved the score. Johnson replaces the predictors by their
//! closest orthogonal counterparts Z (in least squares, Z = X (X'X)^(-1/2) scaled), regresses
//! the outcome on Z, and hands each orthogonal part's share of R² back to the original
//! predictors in proportion to their squared loadings on it. The weights are non-negative, sum
//! to R², and for uncorrelated predictors are the squared correlations with the outcome.

use nalgebra::{DMatrix, DVector};

/// Eigenvalues of the ratings' correlation matrix below this are taken as collinearity.
const COLLINEAR: f64 = 1e-10;

/// The relative weights of the predictors and their sum, R².
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weights {
    /// One per predictor, summing to `r_squared`.
    pub(crate) raw: Vec<f64>,
    pub(crate) r_squared: f64,
}

/// Why the weights cannot be computed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    /// The column (predictor index, or `None` for the outcome) has no variance.
    Constant(Option<usize>),
    /// The predictors' correlation matrix is singular: one rating is a combination of others.
    Collinear,
    /// The predictors explain none of the outcome's variance (R² zero).
    NothingExplained,
}

/// Correlations of each pair among `columns` (every column as long as the others), the
/// outcome last; `Err` names a constant column.
fn correlations(predictors: &[&[f64]], outcome: &[f64]) -> Result<DMatrix<f64>, Problem> {
    let columns: Vec<&[f64]> = predictors
        .iter()
        .copied()
        .chain(std::iter::once(outcome))
        .collect();
    let k = columns.len();
    let n = outcome.len() as f64;
    let centred: Vec<Vec<f64>> = columns
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let mean = c.iter().sum::<f64>() / n;
            let centred: Vec<f64> = c.iter().map(|v| v - mean).collect();
            let norm = centred.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm <= f64::EPSILON * mean.abs().max(1.0) * n.sqrt() {
                return Err(Problem::Constant((j < predictors.len()).then_some(j)));
            }
            Ok(centred.into_iter().map(|v| v / norm).collect())
        })
        .collect::<Result<_, _>>()?;
    let mut r = DMatrix::identity(k, k);
    for i in 0..k {
        for j in i + 1..k {
            let value: f64 = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
            r[(i, j)] = value;
            r[(j, i)] = value;
        }
    }
    Ok(r)
}

/// The correlation matrix from a sample's sums: `sums[j]` = Σ zⱼ and `cross[j][l]` = Σ zⱼ zₗ
/// (l ≥ j) over `n` rows of columns `z` that were centred on the whole data's means (so the
/// one-pass sums lose no precision). The last column is the outcome.
pub(crate) fn from_sums(sums: &[f64], cross: &[Vec<f64>], n: f64) -> Result<DMatrix<f64>, Problem> {
    let k = sums.len();
    let mean: Vec<f64> = sums.iter().map(|s| s / n).collect();
    let covariance = |j: usize, l: usize| {
        let (a, b) = if j <= l { (j, l) } else { (l, j) };
        cross[a][b] / n - mean[a] * mean[b]
    };
    let sd: Vec<f64> = (0..k).map(|j| covariance(j, j).max(0.0).sqrt()).collect();
    for (j, &s) in sd.iter().enumerate() {
        // A column without variance in this sample (every drawn answer the same).
        if s <= 1e-12 * (1.0 + mean[j].abs()) {
            return Err(Problem::Constant((j + 1 < k).then_some(j)));
        }
    }
    let mut r = DMatrix::identity(k, k);
    for j in 0..k {
        for l in j + 1..k {
            let value = (covariance(j, l) / (sd[j] * sd[l])).clamp(-1.0, 1.0);
            r[(j, l)] = value;
            r[(l, j)] = value;
        }
    }
    Ok(r)
}

/// Johnson's relative weights of `predictors` (columns of equal length) for `outcome`.
pub(crate) fn relative_weights(predictors: &[&[f64]], outcome: &[f64]) -> Result<Weights, Problem> {
    from_correlations(&correlations(predictors, outcome)?)
}

/// The relative weights from the correlation matrix of the predictors and the outcome (the
/// outcome last).
pub(crate) fn from_correlations(r: &DMatrix<f64>) -> Result<Weights, Problem> {
    let p = r.nrows() - 1;
    let rxx = r.view((0, 0), (p, p)).into_owned();
    let rxy = DVector::from_iterator(p, (0..p).map(|i| r[(i, p)]));
    let eigen = rxx.symmetric_eigen();
    if eigen.eigenvalues.iter().any(|&l| l < COLLINEAR) {
        return Err(Problem::Collinear);
    }
    let v = &eigen.eigenvectors;
    let root = DMatrix::from_diagonal(&eigen.eigenvalues.map(f64::sqrt));
    let inverse_root = DMatrix::from_diagonal(&eigen.eigenvalues.map(|l| 1.0 / l.sqrt()));
    // Λ = R^(1/2): the correlations of the predictors with their orthogonal counterparts.
    let lambda = v * root * v.transpose();
    // The outcome regressed on the orthogonal counterparts: β = R^(-1/2) r_xy.
    let beta = v * inverse_root * v.transpose() * rxy;
    let raw: Vec<f64> = (0..p)
        .map(|j| {
            (0..p)
                .map(|k| lambda[(j, k)].powi(2) * beta[k].powi(2))
                .sum()
        })
        .collect();
    let r_squared: f64 = raw.iter().sum();
    // Ratings that explain nothing of the score have no shares to divide.
    if !(r_squared.is_finite() && r_squared > f64::EPSILON) {
        return Err(Problem::NothingExplained);
    }
    Ok(Weights { raw, r_squared })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns with the given correlations, built exactly: y and two predictors from
    /// orthonormal vectors.
    fn columns(r12: f64, r1y: f64, r2y: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        // Orthonormal, centred basis over 4 points.
        let e = [
            [0.5, 0.5, -0.5, -0.5],
            [0.5, -0.5, 0.5, -0.5],
            [0.5, -0.5, -0.5, 0.5],
        ];
        // x1 = e0; x2 = r12 e0 + sqrt(1 - r12^2) e1; y = a e0 + b e1 + c e2.
        let s = (1.0 - r12 * r12).sqrt();
        let a = r1y;
        let b = (r2y - r12 * a) / s;
        let c = (1.0 - a * a - b * b).sqrt();
        let x1 = e[0].to_vec();
        let x2 = (0..4).map(|i| r12 * e[0][i] + s * e[1][i]).collect();
        let y = (0..4)
            .map(|i| a * e[0][i] + b * e[1][i] + c * e[2][i])
            .collect();
        (x1, x2, y)
    }

    #[test]
    fn two_predictors_match_the_closed_form() {
        // For two predictors R^(1/2) = [[a, b], [b, a]] with a, b = (sqrt(1 + r) +- sqrt(1 - r)) / 2,
        // so beta = R^(-1/2) r_xy and the weights are a^2 b1^2 + b^2 b2^2 and b^2 b1^2 + a^2 b2^2.
        for (r12, r1y, r2y) in [
            (0.5, 0.6, 0.3),
            (0.0, 0.4, 0.2),
            (-0.3, 0.5, 0.5),
            (0.8, 0.7, 0.65),
        ] {
            let (x1, x2, y) = columns(r12, r1y, r2y);
            let w = relative_weights(&[&x1, &x2], &y).unwrap();
            let (a, b) = (
                ((1.0 + r12).sqrt() + (1.0 - r12).sqrt()) / 2.0,
                ((1.0 + r12).sqrt() - (1.0 - r12).sqrt()) / 2.0,
            );
            let det = a * a - b * b;
            let (b1, b2) = ((a * r1y - b * r2y) / det, (a * r2y - b * r1y) / det);
            let expect = [
                a * a * b1 * b1 + b * b * b2 * b2,
                b * b * b1 * b1 + a * a * b2 * b2,
            ];
            for (got, want) in w.raw.iter().zip(expect) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "{r12} {r1y} {r2y}: {got} vs {want}"
                );
            }
            // They sum to the regression's R^2 = r' R^-1 r.
            let r2 = (r1y * r1y + r2y * r2y - 2.0 * r12 * r1y * r2y) / (1.0 - r12 * r12);
            assert!((w.r_squared - r2).abs() < 1e-12);
        }
        // Uncorrelated predictors: the squared correlations.
        let (x1, x2, y) = columns(0.0, 0.4, 0.2);
        let w = relative_weights(&[&x1, &x2], &y).unwrap();
        assert!((w.raw[0] - 0.16).abs() < 1e-12 && (w.raw[1] - 0.04).abs() < 1e-12);
    }

    #[test]
    fn constant_and_collinear_columns_are_named() {
        let (x1, _, y) = columns(0.5, 0.6, 0.3);
        assert_eq!(
            relative_weights(&[&x1, &[3.0; 4]], &y),
            Err(Problem::Constant(Some(1)))
        );
        assert_eq!(
            relative_weights(&[&x1], &[1.0; 4]),
            Err(Problem::Constant(None))
        );
        let doubled: Vec<f64> = x1.iter().map(|v| 2.0 * v + 1.0).collect();
        let mut third = x1.clone();
        third[0] += 0.25;
        third[1] -= 0.25;
        let sum: Vec<f64> = x1.iter().zip(&third).map(|(a, b)| a + b).collect();
        assert_eq!(
            relative_weights(&[&x1, &doubled], &y),
            Err(Problem::Collinear)
        );
        assert_eq!(
            relative_weights(&[&x1, &third, &sum], &y),
            Err(Problem::Collinear)
        );
    }

    #[test]
    fn sums_give_the_same_weights() {
        let (x1, x2, y) = columns(0.5, 0.6, 0.3);
        let direct = relative_weights(&[&x1, &x2], &y).unwrap();
        let rows: Vec<[f64; 3]> = (0..4).map(|i| [x1[i], x2[i], y[i]]).collect();
        let mut sums = vec![0.0; 3];
        let mut cross = vec![vec![0.0; 3]; 3];
        for row in &rows {
            for j in 0..3 {
                sums[j] += row[j];
                for l in j..3 {
                    cross[j][l] += row[j] * row[l];
                }
            }
        }
        let from = from_correlations(&from_sums(&sums, &cross, 4.0).unwrap()).unwrap();
        for (a, b) in direct.raw.iter().zip(&from.raw) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
