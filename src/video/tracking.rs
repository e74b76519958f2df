//! Face tracks across a video's frames by box overlap: each detection is given to the live track
//! whose last box it overlaps most (intersection over union at least [`Tracker::min_iou`];
//! greedy, best pairs first, as SORT's association without its motion model), and starts a new
//! track otherwise. A track that finds no detection for more than `max_missed` detection rounds
//! ends; its id is never reused.

use crate::detection::BoundingBox;

/// One live track.
#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    /// 1, 2, 3, ... in order of appearance.
    pub id: u32,
    /// The box of its last detection.
    pub bbox: BoundingBox,
    /// Detection rounds since it was last seen (0: seen in the last one).
    pub missed: usize,
}

/// Live tracks and the next id.
#[derive(Clone, Debug)]
pub struct Tracker {
    /// The least overlap (IoU) that joins a detection to a track.
    pub min_iou: f32,
    /// Rounds a track may go unseen before it ends.
    pub max_missed: usize,
    tracks: Vec<Track>,
    next_id: u32,
}

impl Tracker {
    pub fn new(min_iou: f32, max_missed: usize) -> Self {
        Self { min_iou, max_missed, tracks: Vec::new(), next_id: 1 }
    }

    /// One detection round: the track id of each box in `boxes`, in order.
    pub fn update(&mut self, boxes: &[BoundingBox]) -> Vec<u32> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (b, bbox) in boxes.iter().enumerate() {
                let iou = track.bbox.iou(bbox);
                if iou >= self.min_iou {
                    pairs.push((iou, t, b));
                }
            }
        }
        // Best overlaps first; ties by track then box, so that the result is fixed.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut track_of_box: Vec<Option<usize>> = vec![None; boxes.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, t, b) in pairs {
            if !taken[t] && track_of_box[b].is_none() {
                taken[t] = true;
                track_of_box[b] = Some(t);
            }
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            track.missed = if taken[t] { 0 } else { track.missed + 1 };
        }
        let ids = boxes
            .iter()
            .zip(&track_of_box)
            .map(|(bbox, t)| match t {
                Some(t) => {
                    self.tracks[*t].bbox = *bbox;
                    self.tracks[*t].id
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.tracks.push(Track { id, bbox: *bbox, missed: 0 });
                    id
                }
            })
            .collect();
        let max_missed = self.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        ids
    }

    /// The ids of the live tracks (seen within the last `max_missed` rounds).
    pub fn live_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.tracks.iter().map(|t| t.id)
    }

    /// The tracks seen in the last round, with their boxes (what frames between two detection
    /// rounds carry).
    pub fn seen(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.missed == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: usize, y: usize) -> BoundingBox {
        BoundingBox { x, y, width: 40, height: 40 }
    }

    #[test]
    fn moving_faces_keep_their_ids_and_new_ones_get_new_ids() {
        let mut tracker = Tracker::new(0.3, 1);
        assert_eq!(tracker.update(&[at(0, 0), at(200, 0)]), vec![1, 2]);
        // Both moved a little, listed in the other order.
        assert_eq!(tracker.update(&[at(205, 2), at(4, 3)]), vec![2, 1]);
        // A third face; face 2 unseen this round.
        assert_eq!(tracker.update(&[at(8, 5), at(100, 100)]), vec![1, 3]);
        assert_eq!(tracker.seen().map(|t| t.id).collect::<Vec<_>>(), vec![1, 3]);
        // Face 2 is back within max_missed rounds: same id.
        assert_eq!(tracker.update(&[at(8, 5), at(206, 2)]), vec![1, 2]);
        // Two rounds unseen ends a track; it comes back with a new id.
        tracker.update(&[at(8, 5)]);
        tracker.update(&[at(8, 5)]);
        assert_eq!(tracker.update(&[at(8, 5), at(206, 2)]), vec![1, 4]);
    }

    #[test]
    fn one_detection_joins_one_track_the_one_it_overlaps_most() {
        let mut tracker = Tracker::new(0.1, 0);
        assert_eq!(tracker.update(&[at(0, 0), at(30, 0)]), vec![1, 2]);
        // One box between the two, nearer track 2: it joins track 2 only.
        assert_eq!(tracker.update(&[at(22, 0)]), vec![2]);
    }
}
