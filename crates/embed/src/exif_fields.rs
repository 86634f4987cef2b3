//! What a picture's EXIF block says about it: when it was taken, the camera's make and model,
//! its orientation, and where (GPS), as the system fields an indexed picture carries
//! (`$taken_at`, `$camera_make`, `$camera_model`, `$orientation`, `$gps_latitude`,
//! `$gps_longitude`). Read from the container's EXIF block only (JPEG APP1, PNG eXIf, WebP
//! EXIF), never the pixels; a picture without one, or with one that does not parse, has none
//! of these fields, and a field that is malformed is left out alone.

use std::io::Cursor;

use chrono::{FixedOffset, NaiveDate, TimeZone};
use exif::{Exif, In, Tag, Value};
use serde_json::{Map, Value as Json};

/// The EXIF fields of `bytes` (a JPEG, PNG or WebP file) as a JSON object, empty when there
/// are none.
pub fn fields(bytes: &[u8]) -> Map<String, Json> {
    let mut out = Map::new();
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return out;
    };
    if let Some(t) = taken_at(&exif) {
        out.insert("taken_at".into(), Json::String(t));
    }
    for (name, tag) in [("camera_make", Tag::Make), ("camera_model", Tag::Model)] {
        if let Some(s) = ascii(&exif, tag) {
            out.insert(name.into(), Json::String(s));
        }
    }
    if let Some(o) = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
    {
        out.insert("orientation".into(), Json::from(o));
    }
    if let (Some(lat), Some(lon)) = (
        coordinate(&exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S', 90.0),
        coordinate(&exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W', 180.0),
    ) {
        out.insert("gps_latitude".into(), Json::from(lat));
        out.insert("gps_longitude".into(), Json::from(lon));
    }
    out
}

/// A text field, trimmed of the padding cameras leave; `None` when empty or not text.
fn ascii(exif: &Exif, tag: Tag) -> Option<String> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Ascii(parts) = &field.value else {
        return None;
    };
    let raw = parts.first()?;
    let text: String = String::from_utf8_lossy(raw)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    (!text.is_empty()).then_some(text)
}

/// DateTimeOriginal (else DateTime) as RFC 3339: with its recorded offset when the camera
/// wrote one, else read as UTC (EXIF 2.3 times carry no zone of their own).
fn taken_at(exif: &Exif) -> Option<String> {
    let (field, offset_tag) = match exif.get_field(Tag::DateTimeOriginal, In::PRIMARY) {
        Some(f) => (f, Tag::OffsetTimeOriginal),
        None => (exif.get_field(Tag::DateTime, In::PRIMARY)?, Tag::OffsetTime),
    };
    let Value::Ascii(parts) = &field.value else {
        return None;
    };
    let mut dt = exif::DateTime::from_ascii(parts.first()?).ok()?;
    if let Some(Value::Ascii(o)) = exif.get_field(offset_tag, In::PRIMARY).map(|f| &f.value)
        && let Some(o) = o.first()
    {
        let _ = dt.parse_offset(o);
    }
    let naive = NaiveDate::from_ymd_opt(dt.year.into(), dt.month.into(), dt.day.into())?
        .and_hms_opt(dt.hour.into(), dt.minute.into(), dt.second.into())?;
    let offset = FixedOffset::east_opt(i32::from(dt.offset.unwrap_or(0)) * 60)?;
    let at = offset.from_local_datetime(&naive).single()?;
    Some(at.to_rfc3339())
}

/// A GPS coordinate in signed decimal degrees from its degrees/minutes/seconds rationals and
/// its hemisphere (`negative` is S or W); `None` when absent, malformed or out of range.
fn coordinate(exif: &Exif, tag: Tag, reference: Tag, negative: u8, max: f64) -> Option<f64> {
    let Value::Rational(dms) = &exif.get_field(tag, In::PRIMARY)?.value else {
        return None;
    };
    if dms.len() != 3 || dms.iter().any(|r| r.denom == 0) {
        return None;
    }
    let degrees = dms[0].to_f64() + dms[1].to_f64() / 60.0 + dms[2].to_f64() / 3600.0;
    let sign = match &exif.get_field(reference, In::PRIMARY)?.value {
        Value::Ascii(r) if r.first().and_then(|r| r.first()) == Some(&negative) => -1.0,
        Value::Ascii(_) => 1.0,
        _ => return None,
    };
    let value = sign * degrees;
    // Seven decimals: about a centimetre, more than any camera's fix.
    let value = (value * 1e7).round() / 1e7;
    (value.abs() <= max && value.is_finite()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exif::experimental::Writer;
    use exif::{Field, Rational};

    /// A small JPEG with `fields` in an APP1 EXIF segment right after its SOI marker.
    pub(crate) fn jpeg_with(fields: &[Field]) -> Vec<u8> {
        let mut tiff = Cursor::new(Vec::new());
        let mut writer = Writer::new();
        for f in fields {
            writer.push_field(f);
        }
        writer.write(&mut tiff, false).expect("exif");
        let tiff = tiff.into_inner();
        let plain = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/photo.jpg"
        ))
        .expect("read");
        let mut out = plain[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        out.extend_from_slice(b"Exif\0\0");
        out.extend_from_slice(&tiff);
        out.extend_from_slice(&plain[2..]);
        out
    }

    fn ascii_field(tag: Tag, s: &str) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![s.as_bytes().to_vec()]),
        }
    }

    fn dms(d: u32, m: u32, s_hundredths: u32) -> Value {
        Value::Rational(vec![
            Rational { num: d, denom: 1 },
            Rational { num: m, denom: 1 },
            Rational {
                num: s_hundredths,
                denom: 100,
            },
        ])
    }

    #[test]
    fn a_cameras_fields_come_back_typed() {
        let fields = [
            ascii_field(Tag::Make, "Canon\0"),
            ascii_field(Tag::Model, " EOS R6 "),
            Field {
                tag: Tag::Orientation,
                ifd_num: In::PRIMARY,
                value: Value::Short(vec![6]),
            },
            ascii_field(Tag::DateTimeOriginal, "2024:07:14 16:05:09"),
            ascii_field(Tag::OffsetTimeOriginal, "+02:00"),
            ascii_field(Tag::GPSLatitudeRef, "S"),
            Field {
                tag: Tag::GPSLatitude,
                ifd_num: In::PRIMARY,
                value: dms(33, 51, 3084),
            },
            ascii_field(Tag::GPSLongitudeRef, "E"),
            Field {
                tag: Tag::GPSLongitude,
                ifd_num: In::PRIMARY,
                value: dms(151, 12, 5112),
            },
        ];
        let got = fields_of(&jpeg_with(&fields));
        assert_eq!(got["camera_make"], "Canon");
        assert_eq!(got["camera_model"], "EOS R6");
        assert_eq!(got["orientation"], 6);
        assert_eq!(got["taken_at"], "2024-07-14T16:05:09+02:00");
        let lat = got["gps_latitude"].as_f64().expect("lat");
        let lon = got["gps_longitude"].as_f64().expect("lon");
        assert!(
            (lat - -(33.0 + 51.0 / 60.0 + 30.84 / 3600.0)).abs() < 1e-6,
            "{lat}"
        );
        assert!(
            (lon - (151.0 + 12.0 / 60.0 + 51.12 / 3600.0)).abs() < 1e-6,
            "{lon}"
        );
    }

    fn fields_of(bytes: &[u8]) -> Json {
        Json::Object(fields(bytes))
    }

    #[test]
    fn no_exif_or_broken_fields_give_nothing_for_them() {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        let mut plain = Cursor::new(Vec::new());
        img.write_to(&mut plain, image::ImageFormat::Png)
            .expect("png");
        assert!(fields(&plain.into_inner()).is_empty());
        assert!(fields(b"not a picture at all").is_empty());
        // A date that is not one, an orientation out of range, a latitude without its
        // hemisphere: each left out; the make still comes back.
        let got = fields_of(&jpeg_with(&[
            ascii_field(Tag::Make, "Nikon"),
            ascii_field(Tag::DateTimeOriginal, "2024:13:45 99:00:00"),
            Field {
                tag: Tag::Orientation,
                ifd_num: In::PRIMARY,
                value: Value::Short(vec![42]),
            },
            Field {
                tag: Tag::GPSLatitude,
                ifd_num: In::PRIMARY,
                value: dms(10, 0, 0),
            },
        ]));
        assert_eq!(got, serde_json::json!({"camera_make": "Nikon"}));
    }
}
