//! An input sink that records events instead of injecting them, for tests.

use std::sync::{Arc, Mutex, PoisonError};

use crate::input::{DesktopEvent, InputError, InputSink};

/// Records every applied event in a list shared by all its clones: give one
/// clone to the code under test and read the events from another.
#[derive(Clone, Debug, Default)]
pub struct RecordingSink {
    events: Arc<Mutex<Vec<DesktopEvent>>>,
}

impl RecordingSink {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events applied so far, oldest first.
    pub fn events(&self) -> Vec<DesktopEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Returns the events applied so far and forgets them.
    pub fn take(&self) -> Vec<DesktopEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl InputSink for RecordingSink {
    fn apply(&mut self, event: &DesktopEvent) -> Result<(), InputError> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_recording() {
        let reader = RecordingSink::new();
        let mut writer: Box<dyn InputSink> = Box::new(reader.clone());
        writer.apply(&DesktopEvent::MoveTo { x: 1, y: 2 }).unwrap();
        writer.apply(&DesktopEvent::Text("hi".into())).unwrap();
        assert_eq!(
            reader.events(),
            vec![
                DesktopEvent::MoveTo { x: 1, y: 2 },
                DesktopEvent::Text("hi".into())
            ]
        );
        assert_eq!(reader.take().len(), 2);
        assert!(reader.events().is_empty());
    }
}
