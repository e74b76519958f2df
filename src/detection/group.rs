//! OpenCV's `groupRectangles`: a face is seen by many overlapping windows; windows that agree
//! (their four edges within `eps` of the smaller sides' mean) are clustered, each cluster with
//! more than `min_neighbors` windows becomes its average box, and boxes lying inside a larger,
//! better-supported box are dropped.

use super::geometry::BoundingBox;

pub fn group_rectangles(boxes: &[BoundingBox], min_neighbors: usize, eps: f64) -> Vec<BoundingBox> {
    if min_neighbors == 0 || boxes.is_empty() {
        return boxes.to_vec();
    }
    let labels = partition(boxes, |a, b| similar(a, b, eps));
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut sums = vec![[0usize; 4]; classes];
    let mut counts = vec![0usize; classes];
    for (b, &label) in boxes.iter().zip(&labels) {
        for (s, v) in sums[label].iter_mut().zip([b.x, b.y, b.width, b.height]) {
            *s += v;
        }
        counts[label] += 1;
    }
    // The mean in f32, rounded half to even, as OpenCV computes it.
    let averages: Vec<BoundingBox> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let inv = 1.0f32 / n as f32;
            let avg = |v: usize| (v as f32 * inv).round_ties_even() as usize;
            BoundingBox { x: avg(s[0]), y: avg(s[1]), width: avg(s[2]), height: avg(s[3]) }
        })
        .collect();
    let supported = |i: usize| counts[i] > min_neighbors;
    (0..classes)
        .filter(|&i| supported(i))
        .filter(|&i| {
            let (r1, n1) = (averages[i], counts[i]);
            !(0..classes).any(|j| {
                let (r2, n2) = (averages[j], counts[j]);
                let (dx, dy) = (
                    ((r2.width as f64) * eps).round_ties_even() as i64,
                    ((r2.height as f64) * eps).round_ties_even() as i64,
                );
                let (x1, y1, x2, y2) = (r1.x as i64, r1.y as i64, r2.x as i64, r2.y as i64);
                j != i
                    && supported(j)
                    && x1 >= x2 - dx
                    && y1 >= y2 - dy
                    && x1 + r1.width as i64 <= x2 + r2.width as i64 + dx
                    && y1 + r1.height as i64 <= y2 + r2.height as i64 + dy
                    && (n2 > n1.max(3) || n1 < 3)
            })
        })
        .map(|i| averages[i])
        .collect()
}

/// OpenCV's `SimilarRects`.
fn similar(a: &BoundingBox, b: &BoundingBox, eps: f64) -> bool {
    let delta = eps * (a.width.min(b.width) + a.height.min(b.height)) as f64 * 0.5;
    let close = |p: usize, q: usize| (p as f64 - q as f64).abs() <= delta;
    close(a.x, b.x) && close(a.y, b.y) && close(a.x + a.width, b.x + b.width) && close(a.y + a.height, b.y + b.height)
}

/// Equivalence classes of the transitive closure of `same` (union-find), numbered in the order
/// of each class's first member, as `cv::partition` numbers them.
fn partition<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..items.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..items.len() {
        for j in 0..i {
            if same(&items[i], &items[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut label_of_root = vec![usize::MAX; items.len()];
    let mut next = 0;
    (0..items.len())
        .map(|i| {
            let r = root(&mut parent, i);
            if label_of_root[r] == usize::MAX {
                label_of_root[r] = next;
                next += 1;
            }
            label_of_root[r]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: usize, y: usize, side: usize) -> BoundingBox {
        BoundingBox { x, y, width: side, height: side }
    }

    #[test]
    fn clusters_are_averaged_and_thin_ones_dropped() {
        let face = [b(100, 100, 50), b(102, 101, 50), b(98, 99, 52), b(101, 100, 48)];
        let stray = [b(300, 20, 30), b(301, 21, 30)]; // two windows: too few neighbours
        let all: Vec<_> = face.iter().chain(&stray).copied().collect();
        let grouped = group_rectangles(&all, 2, 0.2);
        // x: 401/4 = 100.25, y: 400/4 = 100, side: 200/4 = 50.
        assert_eq!(grouped, vec![b(100, 100, 50)]);
        // With no neighbours required, the raw windows come back untouched.
        assert_eq!(group_rectangles(&all, 0, 0.2), all);
    }

    #[test]
    fn similarity_is_transitive_and_a_box_inside_a_stronger_one_goes() {
        // A chain: each close to the next, the ends not close to each other.
        let chain = [b(0, 0, 40), b(7, 0, 40), b(14, 0, 40), b(21, 0, 40)];
        assert!(!similar(&chain[0], &chain[3], 0.2));
        assert_eq!(partition(&chain, |a, b| similar(a, b, 0.2)), vec![0, 0, 0, 0]);
        // A small, weakly supported box inside a big, well-supported one is dropped.
        let big: Vec<_> = (0..6).map(|i| b(100 + i, 100, 100)).collect();
        let small: Vec<_> = (0..4).map(|i| b(140 + i, 140, 30)).collect();
        let all: Vec<_> = big.iter().chain(&small).copied().collect();
        let grouped = group_rectangles(&all, 2, 0.2);
        assert_eq!(grouped.len(), 1);
        assert_eq!(grouped[0].width, 100);
    }
}
