//! The technician's remote-session viewer window (eframe/egui).
