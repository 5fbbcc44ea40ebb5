//! Where the viewer draws the remote pointer, and in which shape.
//!
//! The agent sends the pointer's position and shape apart from the picture
//! (`AgentToConsole::Pointer`, `AgentToConsole::PointerShape`). While the
//! technician controls the desktop and their own pointer is over the
//! picture, the shape is drawn under *their* pointer at once (and the
//! system pointer is hidden there), so moving feels local even when the
//! agent's answer takes a round trip; otherwise it is drawn where the agent
//! says. Pure geometry: no window, no network.

use eframe::egui::{Pos2, Rect, Vec2};

use crate::input::Fit;

/// Which position the pointer is drawn at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PointerAt {
    /// The technician's own pointer, in window points: drawn at once.
    Local(Pos2),
    /// Where the agent last said, in window points.
    Remote(Pos2),
}

impl PointerAt {
    /// Chooses the position: the technician's own while they control the
    /// desktop and hover over the picture, the agent's otherwise.
    pub(crate) fn choose(
        fit: &Fit,
        remote: Option<(i32, i32)>,
        local: Option<Pos2>,
        controlling: bool,
    ) -> Option<Self> {
        match local {
            Some(local) if controlling && fit.rect.contains(local) => Some(Self::Local(local)),
            _ => remote.map(|(x, y)| Self::Remote(fit.to_window(x, y))),
        }
    }

    /// The point in the window the pointer's hot spot goes to.
    pub(crate) fn pos(self) -> Pos2 {
        match self {
            Self::Local(p) | Self::Remote(p) => p,
        }
    }
}

/// The window rectangle for a `size` pointer picture whose hot spot is at
/// `hot` (picture pixels), with the hot spot on `at`: scaled like the
/// picture, so the pointer keeps its size relative to the remote desktop.
pub(crate) fn shape_rect(fit: &Fit, at: Pos2, size: [u16; 2], hot: [u16; 2]) -> Rect {
    let scale = fit.scale();
    let hot = Vec2::new(f32::from(hot[0]), f32::from(hot[1])) * scale;
    let size = Vec2::new(f32::from(size[0]), f32::from(size[1])) * scale;
    Rect::from_min_size(at - hot, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui::pos2;

    /// A 200×100 frame shown at half size from (10, 20).
    fn half() -> Fit {
        Fit::new(
            Rect::from_min_size(pos2(10.0, 20.0), Vec2::new(100.0, 50.0)),
            200,
            100,
        )
    }

    #[test]
    fn the_technicians_own_pointer_wins_while_controlling_over_the_picture() {
        let fit = half();
        let inside = pos2(50.0, 30.0);
        assert_eq!(
            PointerAt::choose(&fit, Some((0, 0)), Some(inside), true),
            Some(PointerAt::Local(inside))
        );
        // Viewing only, or outside the picture: where the agent says.
        let remote = Some(PointerAt::Remote(fit.to_window(100, 50)));
        assert_eq!(
            PointerAt::choose(&fit, Some((100, 50)), Some(inside), false),
            remote
        );
        assert_eq!(
            PointerAt::choose(&fit, Some((100, 50)), Some(pos2(500.0, 30.0)), true),
            remote
        );
        assert_eq!(PointerAt::choose(&fit, None, None, true), None);
    }

    #[test]
    fn the_shape_is_scaled_like_the_picture_with_its_hot_spot_on_the_point() {
        let fit = half();
        let rect = shape_rect(&fit, pos2(60.0, 40.0), [16, 24], [4, 2]);
        assert_eq!(
            rect,
            Rect::from_min_size(pos2(58.0, 39.0), Vec2::new(8.0, 12.0))
        );
    }
}
