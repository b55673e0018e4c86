//! Which uploads the machine's conditions hold back, and why: a metered connection holds the
//! uploads from watched folders (and, when asked, those started by hand), battery power holds
//! every upload when asked. "Upload anyway" lets them go until the condition ends, so the next
//! metered connection holds them again.

use serde::Serialize;

use crate::conditions::MachineState;
use crate::network::NetworkSettings;

/// The condition uploads are held for; battery first where both apply, since it holds more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum HoldReason {
    Metered,
    OnBattery,
}

impl HoldReason {
    /// What the tray and the window say.
    pub fn sentence(self) -> &'static str {
        match self {
            HoldReason::Metered => "Paused: metered connection",
            HoldReason::OnBattery => "Paused: on battery",
        }
    }
}

/// What the conditions hold now. `reason` stays set after "Upload anyway" (with `overridden`),
/// so the window can say that uploads run on a metered connection by choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Holds {
    pub reason: Option<HoldReason>,
    /// Uploads from watched folders wait.
    pub watched: bool,
    /// Uploads started by hand (the window, the CLI) wait.
    pub by_hand: bool,
    /// The person chose "Upload anyway" for this condition.
    pub overridden: bool,
    /// "Paused: metered connection" while anything is held.
    pub message: Option<String>,
}

impl Holds {
    /// The holds for `state` under `settings`; `anyway` is the condition the person chose to
    /// upload through, if any.
    pub fn for_conditions(state: MachineState, settings: &NetworkSettings, anyway: Option<HoldReason>) -> Holds {
        let battery = state.on_battery && settings.pause_on_battery;
        let metered_watched = state.metered && settings.pause_on_metered_watched;
        let metered_by_hand = state.metered && settings.pause_on_metered_manual;
        let (reason, watched, by_hand) = if battery {
            (Some(HoldReason::OnBattery), true, true)
        } else if metered_watched || metered_by_hand {
            (Some(HoldReason::Metered), metered_watched, metered_by_hand)
        } else {
            (None, false, false)
        };
        let overridden = reason.is_some() && reason == anyway;
        if overridden {
            return Holds { reason, watched: false, by_hand: false, overridden, message: None };
        }
        Holds { reason, watched, by_hand, overridden, message: reason.map(|r| r.sentence().to_owned()) }
    }

    pub fn holds_anything(&self) -> bool {
        self.watched || self.by_hand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METERED: MachineState = MachineState { metered: true, on_battery: false };
    const BATTERY: MachineState = MachineState { metered: false, on_battery: true };
    const BOTH: MachineState = MachineState { metered: true, on_battery: true };

    #[test]
    fn by_default_a_metered_connection_holds_watched_folders_only_and_battery_holds_nothing() {
        let defaults = NetworkSettings::default();
        let metered = Holds::for_conditions(METERED, &defaults, None);
        assert!(metered.watched && !metered.by_hand);
        assert_eq!(metered.message.as_deref(), Some("Paused: metered connection"));
        assert_eq!(Holds::for_conditions(BATTERY, &defaults, None), Holds::default());
        assert_eq!(Holds::for_conditions(MachineState::default(), &defaults, None), Holds::default());
    }

    #[test]
    fn each_setting_holds_what_it_names() {
        let settings = NetworkSettings {
            pause_on_metered_watched: false,
            pause_on_metered_manual: true,
            pause_on_battery: true,
            ..Default::default()
        };
        let metered = Holds::for_conditions(METERED, &settings, None);
        assert!(!metered.watched && metered.by_hand);
        let battery = Holds::for_conditions(BOTH, &settings, None);
        assert_eq!(battery.reason, Some(HoldReason::OnBattery), "battery holds more, so it is the one named");
        assert!(battery.watched && battery.by_hand);
        let nothing = NetworkSettings { pause_on_metered_watched: false, ..Default::default() };
        assert!(!Holds::for_conditions(BOTH, &nothing, None).holds_anything());
    }

    #[test]
    fn upload_anyway_lets_go_of_its_condition_only() {
        let settings = NetworkSettings { pause_on_battery: true, ..Default::default() };
        let anyway = Holds::for_conditions(METERED, &settings, Some(HoldReason::Metered));
        assert!(anyway.overridden && !anyway.holds_anything());
        assert_eq!(anyway.reason, Some(HoldReason::Metered), "the window still says why it could have waited");
        let battery = Holds::for_conditions(BOTH, &settings, Some(HoldReason::Metered));
        assert!(battery.holds_anything() && !battery.overridden, "a new condition holds again");
    }
}
