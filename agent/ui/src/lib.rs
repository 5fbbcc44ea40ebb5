//! The employee's consent dialog and session indicator (eframe/egui).
