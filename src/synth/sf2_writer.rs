//! A minimal SoundFont 2.01 writer: RIFF `sfbk` with INFO, `sdta/smpl` (16-bit mono samples)
//! and the nine `pdta` sub-chunks. Enough to describe instruments made of key-ranged, looped
//! samples, which is what the project's own SoundFont ([`super::builtin`]) needs.

/// SoundFont generator operators used here (SoundFont 2.01 spec, section 8.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Generator {
    InitialFilterFc = 8,
    ChorusEffectsSend = 15,
    ReverbEffectsSend = 16,
    Pan = 17,
    DelayVolEnv = 33,
    AttackVolEnv = 34,
    HoldVolEnv = 35,
    DecayVolEnv = 36,
    SustainVolEnv = 37,
    ReleaseVolEnv = 38,
    KeynumToVolEnvDecay = 40,
    Instrument = 41,
    KeyRange = 43,
    VelRange = 44,
    InitialAttenuation = 48,
    SampleId = 53,
    SampleModes = 54,
    OverridingRootKey = 58,
}

/// `sampleModes` value: loop continuously, also through the release phase.
pub const SAMPLE_MODE_LOOP: i16 = 1;

/// A mono 16-bit sample with its loop (sample offsets relative to the sample's first frame).
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub frames: Vec<i16>,
    pub loop_start: u32,
    pub loop_end: u32,
    pub sample_rate_hz: u32,
    pub root_key: u8,
    /// Cents to add on playback so the root key sounds at its exact pitch.
    pub pitch_correction_cents: i8,
}

/// One zone: a list of (generator, amount) pairs. Key/velocity ranges are given separately
/// because the spec requires them first in the list.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    pub key_range: Option<(u8, u8)>,
    pub generators: Vec<(Generator, i16)>,
}

#[derive(Debug, Clone)]
pub struct InstrumentZone {
    pub zone: Zone,
    pub sample_index: u16,
}

#[derive(Debug, Clone)]
pub struct Instrument {
    pub name: String,
    /// Zone without a sample whose generators apply to every other zone.
    pub global: Option<Zone>,
    pub zones: Vec<InstrumentZone>,
}

#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub program: u16,
    pub bank: u16,
    pub instrument_index: u16,
}

#[derive(Debug, Clone, Default)]
pub struct SoundFontSpec {
    pub name: String,
    pub samples: Vec<Sample>,
    pub instruments: Vec<Instrument>,
    pub presets: Vec<Preset>,
}

/// Zero frames after each sample, as the spec requires (at least 46).
const SAMPLE_PADDING_FRAMES: usize = 46;

impl SoundFontSpec {
    /// The complete `.sf2` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let info = list(
            b"INFO",
            &[
                chunk(b"ifil", &[2, 0, 1, 0]),
                chunk(b"isng", &zstr("EMU8000", 8)),
                chunk(b"INAM", &zstr(&self.name, even_len(self.name.len() + 1))),
                chunk(b"ISFT", &zstr("mtosi", 6)),
            ],
        );

        let mut smpl = Vec::new();
        let mut shdr = Vec::new();
        let mut offset = 0u32;
        for sample in &self.samples {
            for &frame in &sample.frames {
                smpl.extend_from_slice(&frame.to_le_bytes());
            }
            smpl.extend(std::iter::repeat_n(0u8, 2 * SAMPLE_PADDING_FRAMES));
            let len = sample.frames.len() as u32;
            shdr.extend_from_slice(&zstr(&sample.name, 20));
            for value in [
                offset,
                offset + len,
                offset + sample.loop_start,
                offset + sample.loop_end,
                sample.sample_rate_hz,
            ] {
                shdr.extend_from_slice(&value.to_le_bytes());
            }
            shdr.push(sample.root_key);
            shdr.push(sample.pitch_correction_cents as u8);
            shdr.extend_from_slice(&0u16.to_le_bytes()); // sample link
            shdr.extend_from_slice(&1u16.to_le_bytes()); // mono sample
            offset += len + SAMPLE_PADDING_FRAMES as u32;
        }
        shdr.extend_from_slice(&zstr("EOS", 20));
        shdr.extend_from_slice(&[0u8; 26]);
        let sdta = list(b"sdta", &[chunk(b"smpl", &smpl)]);

        let mut inst = Vec::new();
        let mut ibag = Vec::new();
        let mut igen = Vec::new();
        let mut bag_count = 0u16;
        let mut gen_count = 0u16;
        for instrument in &self.instruments {
            inst.extend_from_slice(&zstr(&instrument.name, 20));
            inst.extend_from_slice(&bag_count.to_le_bytes());
            let zones = instrument.global.iter().map(|zone| (zone, None)).chain(
                instrument
                    .zones
                    .iter()
                    .map(|z| (&z.zone, Some(z.sample_index))),
            );
            for (zone, sample) in zones {
                push_bag(&mut ibag, gen_count);
                bag_count += 1;
                gen_count +=
                    push_generators(&mut igen, zone, sample.map(|s| (Generator::SampleId, s)));
            }
        }
        inst.extend_from_slice(&zstr("EOI", 20));
        inst.extend_from_slice(&bag_count.to_le_bytes());
        push_bag(&mut ibag, gen_count);
        igen.extend_from_slice(&[0u8; 4]);

        let mut phdr = Vec::new();
        let mut pbag = Vec::new();
        let mut pgen = Vec::new();
        let mut preset_gen_count = 0u16;
        for (bag_index, preset) in self.presets.iter().enumerate() {
            phdr.extend_from_slice(&zstr(&preset.name, 20));
            phdr.extend_from_slice(&preset.program.to_le_bytes());
            phdr.extend_from_slice(&preset.bank.to_le_bytes());
            phdr.extend_from_slice(&(bag_index as u16).to_le_bytes());
            phdr.extend_from_slice(&[0u8; 12]); // library, genre, morphology
            push_bag(&mut pbag, preset_gen_count);
            preset_gen_count += push_generators(
                &mut pgen,
                &Zone::default(),
                Some((Generator::Instrument, preset.instrument_index)),
            );
        }
        phdr.extend_from_slice(&zstr("EOP", 20));
        phdr.extend_from_slice(&[0u8; 4]);
        phdr.extend_from_slice(&(self.presets.len() as u16).to_le_bytes());
        phdr.extend_from_slice(&[0u8; 12]);
        push_bag(&mut pbag, preset_gen_count);
        pgen.extend_from_slice(&[0u8; 4]);

        let modulator_terminal = [0u8; 10];
        let pdta = list(
            b"pdta",
            &[
                chunk(b"phdr", &phdr),
                chunk(b"pbag", &pbag),
                chunk(b"pmod", &modulator_terminal),
                chunk(b"pgen", &pgen),
                chunk(b"inst", &inst),
                chunk(b"ibag", &ibag),
                chunk(b"imod", &modulator_terminal),
                chunk(b"igen", &igen),
                chunk(b"shdr", &shdr),
            ],
        );

        let mut body = b"sfbk".to_vec();
        body.extend_from_slice(&info);
        body.extend_from_slice(&sdta);
        body.extend_from_slice(&pdta);
        chunk(b"RIFF", &body)
    }
}

/// A bag record: first generator index, first modulator index (no modulators are written).
fn push_bag(out: &mut Vec<u8>, generator_index: u16) {
    out.extend_from_slice(&generator_index.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// Writes a zone's generators in the order the spec requires (key range first, the
/// sample/instrument link last); returns how many were written.
fn push_generators(out: &mut Vec<u8>, zone: &Zone, link: Option<(Generator, u16)>) -> u16 {
    let mut count = 0;
    if let Some((low, high)) = zone.key_range {
        out.extend_from_slice(&(Generator::KeyRange as u16).to_le_bytes());
        out.extend_from_slice(&[low, high]);
        count += 1;
    }
    for &(generator, amount) in &zone.generators {
        out.extend_from_slice(&(generator as u16).to_le_bytes());
        out.extend_from_slice(&amount.to_le_bytes());
        count += 1;
    }
    if let Some((generator, index)) = link {
        out.extend_from_slice(&(generator as u16).to_le_bytes());
        out.extend_from_slice(&index.to_le_bytes());
        count += 1;
    }
    count
}

fn chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len() + 1);
    out.extend_from_slice(id);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0); // RIFF chunks are word-aligned
    }
    out
}

fn list(kind: &[u8; 4], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut body = kind.to_vec();
    for c in chunks {
        body.extend_from_slice(c);
    }
    chunk(b"LIST", &body)
}

/// `text` as a zero-padded field of exactly `len` bytes (truncated to leave a terminating zero).
fn zstr(text: &str, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii())
        .take(len - 1)
        .collect();
    out.resize(len, 0);
    out
}

fn even_len(len: usize) -> usize {
    len + len % 2
}

#[cfg(test)]
mod tests {
    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    /// Walks the chunks of a LIST body, returning (id, size) pairs.
    fn sub_chunks(body: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= body.len() {
            let size = u32_at(body, at + 4) as usize;
            out.push((
                String::from_utf8_lossy(&body[at..at + 4]).into_owned(),
                size,
            ));
            at += 8 + size + size % 2;
        }
        assert_eq!(at, body.len(), "chunks must tile their list exactly");
        out
    }

    #[test]
    fn the_riff_structure_holds_every_required_chunk_with_whole_records() {
        let bytes = crate::synth::builtin::builtin_soundfont_bytes();
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(&bytes, 4) as usize, bytes.len() - 8);
        assert_eq!(&bytes[8..12], b"sfbk");
        let lists = sub_chunks(&bytes[12..]);
        assert_eq!(
            lists.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["LIST", "LIST", "LIST"]
        );
        let mut at = 12;
        let mut kinds = Vec::new();
        for (_, size) in &lists {
            let body = &bytes[at + 8..at + 8 + size];
            kinds.push((
                String::from_utf8_lossy(&body[..4]).into_owned(),
                sub_chunks(&body[4..]),
            ));
            at += 8 + size;
        }
        let ids = |i: usize| {
            kinds[i]
                .1
                .iter()
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds[0].0, "INFO");
        assert!(ids(0).starts_with(&["ifil".to_string(), "isng".to_string(), "INAM".to_string()]));
        assert_eq!(
            (kinds[1].0.as_str(), ids(1)),
            ("sdta", vec!["smpl".to_string()])
        );
        assert_eq!(kinds[2].0, "pdta");
        let record_sizes = [
            ("phdr", 38),
            ("pbag", 4),
            ("pmod", 10),
            ("pgen", 4),
            ("inst", 22),
            ("ibag", 4),
            ("imod", 10),
            ("igen", 4),
            ("shdr", 46),
        ];
        let pdta = &kinds[2].1;
        assert_eq!(pdta.len(), record_sizes.len());
        for ((id, size), (want_id, record)) in pdta.iter().zip(record_sizes) {
            assert_eq!(id, want_id);
            assert_eq!(
                size % record,
                0,
                "{id}: {size} bytes is not whole {record}-byte records"
            );
        }
        // 2 presets + terminal, 13 samples + terminal.
        assert_eq!(pdta[0].1 / 38, 3);
        assert_eq!(pdta[8].1 / 46, 14);
    }
}
