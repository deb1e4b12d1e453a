//! What every chart shares: canvas size, colours, fonts, and how drawing errors become I/O errors.
//!
//! Text is never measured with a real font. plotters is built without its `ttf` and `ab_glyph`
//! features (nothing in the dependency tree turns them on: criterion asks only for the SVG backend
//! and two series kinds), so it sizes labels with its built-in estimate, plain arithmetic on the
//! font size and the number of characters. The SVG backend writes each label as a `<text>` element
//! and the viewer's own font draws it. No font file or system font is read, so the same run gives
//! byte-identical SVG on every machine; the price is label boxes that are only roughly the size of
//! the drawn text, which the layouts below leave room for.

use std::io;

use plotters::style::{FontDesc, IntoFont, RGBColor};

/// Width and height of every chart, in SVG pixels.
pub const SIZE: (u32, u32) = (1000, 500);

/// Colours told apart by most readers, including the red-green colour blind (Okabe and Ito).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Failed operations.
pub const FAILED: RGBColor = RGBColor(200, 0, 0);

/// The shading of a fault's window and the line of an instant fault.
pub const FAULT: RGBColor = RGBColor(230, 120, 0);

/// The colour for the `index`-th series, repeating after [`PALETTE`] runs out.
pub fn series_colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// The chart's title.
pub fn caption_font() -> FontDesc<'static> {
    ("sans-serif", 20).into_font()
}

/// Axis descriptions, legends and annotations.
pub fn label_font() -> FontDesc<'static> {
    ("sans-serif", 13).into_font()
}

/// A plotters drawing error as an I/O error, the one error type chart writing returns.
pub fn drawing_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("drawing a chart: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the choice above: should a dependency turn on plotters' `ttf` or `ab_glyph` feature,
    /// text would be measured with a real font and the charts would depend on the machine.
    #[test]
    fn text_is_sized_by_arithmetic_not_by_a_font() {
        let font = label_font();
        let text = "crash replica-2";
        let em: f64 = 13.0 / 1.24 / 1.24;
        let layout = match font.layout_box(text) {
            Ok(layout) => layout,
            Err(e) => panic!("{e}"),
        };
        let expected = (
            (0, -em.round() as i32),
            (
                (em * 0.7 * text.len() as f64).round() as i32,
                (em * 0.24).round() as i32,
            ),
        );
        assert_eq!(layout, expected, "plotters is measuring text with a font");
    }
}
