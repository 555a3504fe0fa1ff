//! The edit list of an MP4/M4A audio track (`moov/trak/edts/elst`): where the track's audio
//! starts after the encoder's priming samples (1024 or 2112 for AAC) and how long it lasts.
//! symphonia 0.5's MP4 reader does not apply it, so without this an AAC file's sample 0 would
//! be 23–48 ms before the recording's first sample and the last packet's padding would remain.
//!
//! The reader walks box headers with seeks and reads only the `moov` box, bounded in size, so a
//! hostile header cannot make it allocate more than [`MAX_MOOV_BYTES`]. Anything it cannot
//! make sense of gives `None` (the audio is then decoded untrimmed, and symphonia judges the
//! file itself).

use std::io::{Read, Seek, SeekFrom};

/// The largest `moov` box read: its sample tables grow by ~4 bytes a packet, so an hour of
/// 44.1 kHz AAC needs well under 1 MiB.
pub const MAX_MOOV_BYTES: u64 = 64 << 20;

/// Where the presented audio lies within the decoded track, in the track's media time scale
/// and the movie's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditList {
    /// Decoded frames to drop at the start, in units of `media_timescale`.
    pub media_start: u64,
    pub media_timescale: u32,
    /// How long the presentation lasts, in units of `movie_timescale` (`None`: to the end).
    pub duration: Option<u64>,
    pub movie_timescale: u32,
}

impl EditList {
    /// (frames to skip, frames to keep or `None` for all) at `sample_rate_hz`.
    pub fn frames(&self, sample_rate_hz: u32) -> (u64, Option<u64>) {
        let rescale = |value: u64, scale: u32| {
            ((value as u128 * sample_rate_hz as u128 + scale as u128 / 2) / scale as u128) as u64
        };
        (
            rescale(self.media_start, self.media_timescale),
            self.duration.map(|d| rescale(d, self.movie_timescale)),
        )
    }
}

/// The edit list of the first audio track of the MP4 in `source`, if it has one that trims
/// anything. Leaves the position of `source` unspecified.
pub fn read_edit_list<R: Read + Seek>(source: &mut R) -> Option<EditList> {
    let end = source.seek(SeekFrom::End(0)).ok()?;
    let mut at = 0u64;
    while at + 8 <= end {
        source.seek(SeekFrom::Start(at)).ok()?;
        let (kind, header, size) = box_header_from(source, end - at)?;
        if &kind == b"moov" {
            let body = size - header;
            if body > MAX_MOOV_BYTES {
                return None;
            }
            let mut moov = vec![0; body as usize];
            source.read_exact(&mut moov).ok()?;
            return edit_list_in_moov(&moov);
        }
        at += size;
    }
    None
}

/// (kind, header length, whole size) of the box at the reader's position, with `room` bytes
/// left in its parent.
fn box_header_from<R: Read>(source: &mut R, room: u64) -> Option<([u8; 4], u64, u64)> {
    let mut head = [0u8; 8];
    source.read_exact(&mut head).ok()?;
    let kind = [head[4], head[5], head[6], head[7]];
    let (header, size) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
        0 => (8, room),
        1 => {
            let mut large = [0u8; 8];
            source.read_exact(&mut large).ok()?;
            (16, u64::from_be_bytes(large))
        }
        n => (8, n as u64),
    };
    (size >= header && size <= room).then_some((kind, header, size))
}

/// The child boxes of `body` as (kind, contents).
fn children(mut body: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while body.len() >= 8 {
        let Some((kind, header, size)) = box_header_from(&mut &body[..], body.len() as u64) else {
            break;
        };
        let (header, size) = (header as usize, size as usize);
        out.push((kind, &body[header..size]));
        body = &body[size..];
    }
    out
}

fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(body)
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, b)| b)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The time scale of an `mvhd` or `mdhd` box (version 0: 32-bit times, version 1: 64-bit).
fn timescale(full_box: &[u8]) -> Option<u32> {
    let at = if *full_box.first()? == 1 { 20 } else { 12 };
    be_u32(full_box, at).filter(|&t| t > 0)
}

fn edit_list_in_moov(moov: &[u8]) -> Option<EditList> {
    let movie_timescale = timescale(child(moov, b"mvhd")?)?;
    for (kind, trak) in children(moov) {
        if &kind != b"trak" {
            continue;
        }
        let mdia = child(trak, b"mdia")?;
        let handler = child(mdia, b"hdlr")?;
        if handler.get(8..12) != Some(b"soun") {
            continue;
        }
        let media_timescale = timescale(child(mdia, b"mdhd")?)?;
        let elst = child(child(trak, b"edts")?, b"elst")?;
        return first_edit(elst, media_timescale, movie_timescale);
    }
    None
}

/// The first edit that presents media (empty edits, media time −1, are skipped); its duration
/// bounds the audio only when it is the list's last entry.
fn first_edit(elst: &[u8], media_timescale: u32, movie_timescale: u32) -> Option<EditList> {
    let version = *elst.first()?;
    let count = be_u32(elst, 4)? as usize;
    let entry_bytes = if version == 1 { 20 } else { 12 };
    for index in 0..count {
        let at = 8 + index * entry_bytes;
        let (duration, media_time) = if version == 1 {
            (be_u64(elst, at)?, be_u64(elst, at + 8)? as i64)
        } else {
            (
                be_u32(elst, at)? as u64,
                be_u32(elst, at + 4)? as i32 as i64,
            )
        };
        if media_time < 0 {
            continue;
        }
        let last = index + 1 == count;
        let edit = EditList {
            media_start: media_time as u64,
            media_timescale,
            // A zero duration means "the rest" in files written by some muxers.
            duration: (last && duration > 0).then_some(duration),
            movie_timescale,
        };
        return (edit.media_start > 0 || edit.duration.is_some()).then_some(edit);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    /// A version-0 `mvhd`/`mdhd` body with `timescale`.
    fn header_box(kind: &[u8; 4], timescale: u32) -> Vec<u8> {
        let mut body = vec![0u8; 12];
        body.extend_from_slice(&timescale.to_be_bytes());
        body.extend_from_slice(&[0u8; 8]);
        mp4_box(kind, &body)
    }

    fn file(handler: &[u8; 4], entries: &[(u32, i32)]) -> Vec<u8> {
        let mut elst = vec![0u8; 4];
        elst.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for &(duration, media_time) in entries {
            elst.extend_from_slice(&duration.to_be_bytes());
            elst.extend_from_slice(&media_time.to_be_bytes());
            elst.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        }
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 13]);
        let mdia = [mp4_box(b"hdlr", &hdlr), header_box(b"mdhd", 44_100)].concat();
        let trak = [
            mp4_box(b"edts", &mp4_box(b"elst", &elst)),
            mp4_box(b"mdia", &mdia),
        ]
        .concat();
        let moov = [header_box(b"mvhd", 1000), mp4_box(b"trak", &trak)].concat();
        [
            mp4_box(b"ftyp", b"M4A \0\0\0\0"),
            mp4_box(b"mdat", &[7u8; 100]),
            mp4_box(b"moov", &moov),
        ]
        .concat()
    }

    #[test]
    fn the_priming_samples_and_the_duration_come_from_the_audio_tracks_edit_list() {
        let edit = read_edit_list(&mut Cursor::new(file(b"soun", &[(1500, 1024)]))).unwrap();
        assert_eq!(edit.frames(44_100), (1024, Some(66_150)));
        // At another output rate the times scale.
        assert_eq!(edit.frames(22_050), (512, Some(33_075)));
        // An empty edit first (media time -1) is skipped.
        let edit =
            read_edit_list(&mut Cursor::new(file(b"soun", &[(10, -1), (1500, 2112)]))).unwrap();
        assert_eq!(edit.frames(44_100), (2112, Some(66_150)));
    }

    #[test]
    fn no_trim_without_an_audio_track_or_an_edit_that_trims() {
        assert_eq!(
            read_edit_list(&mut Cursor::new(file(b"vide", &[(1500, 1024)]))),
            None
        );
        assert_eq!(
            read_edit_list(&mut Cursor::new(file(b"soun", &[(0, 0)]))),
            None
        );
        assert_eq!(read_edit_list(&mut Cursor::new(Vec::new())), None);
    }

    #[test]
    fn hostile_or_cut_boxes_give_none_without_a_large_allocation() {
        let good = file(b"soun", &[(1500, 1024)]);
        // Cut anywhere: never a panic.
        for len in 0..good.len() {
            let _ = read_edit_list(&mut Cursor::new(&good[..len]));
        }
        // A moov that claims 4 GiB in a small file is refused before anything is read.
        let mut huge = mp4_box(b"ftyp", b"M4A \0\0\0\0");
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(b"moov");
        huge.extend_from_slice(&(4u64 << 30).to_be_bytes());
        assert_eq!(read_edit_list(&mut Cursor::new(huge)), None);
        // Every byte flipped in turn: never a panic.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            let _ = read_edit_list(&mut Cursor::new(bad));
        }
    }
}
