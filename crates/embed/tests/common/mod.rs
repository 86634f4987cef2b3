//! What the int8 quality tests measure: how close int8 vectors are to fp32 ones, and whether
//! they find the same neighbours.

/// The agreement of two encodings of the same items.
#[derive(Debug)]
pub struct Agreement {
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Mean over items of |top-k by `a` ∩ top-k by `b`| / k, each item's neighbours among all
    /// the others.
    pub top_k_overlap: f64,
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The `k` nearest other items of every item by cosine.
fn neighbours(v: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    let unit: Vec<Vec<f32>> = v
        .iter()
        .map(|x| {
            let n = x.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.iter().map(|a| a / n).collect()
        })
        .collect();
    (0..unit.len())
        .map(|i| {
            let mut scored: Vec<(f32, usize)> = (0..unit.len())
                .filter(|&j| j != i)
                .map(|j| (unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum(), j))
                .collect();
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(k);
            scored.into_iter().map(|(_, j)| j).collect()
        })
        .collect()
}

pub fn agreement(a: &[Vec<f32>], b: &[Vec<f32>], k: usize) -> Agreement {
    assert_eq!(a.len(), b.len());
    assert!(a.len() > k, "need more than {k} items");
    let cosines: Vec<f64> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
    let (na, nb) = (neighbours(a, k), neighbours(b, k));
    let shared: usize = na
        .iter()
        .zip(&nb)
        .map(|(x, y)| x.iter().filter(|j| y.contains(j)).count())
        .sum();
    Agreement {
        mean_cosine: cosines.iter().sum::<f64>() / cosines.len() as f64,
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        top_k_overlap: shared as f64 / (k * a.len()) as f64,
    }
}
