//! Which class of the subscription's ARM budget a step's requests belong to
//! (`fogbook_activities::arm::Priority`): steps inside an open unprotected window (and the
//! steps that open and close it) before other steps, and the first step of a run — a new
//! fleet target starting — last. Polls of operations in flight are the most urgent class
//! whatever the step (the ARM client marks them).

use fogbook_activities::arm::Priority;

use crate::runbook::{Runbook, Step, WindowEdge};

/// The class of `step`'s requests, from its place in `runbook`.
pub(crate) fn request_priority(runbook: &Runbook, step: &Step) -> Priority {
    let Some(idx) = runbook.steps.iter().position(|s| s.id == step.id) else {
        return Priority::Step;
    };
    let mut open = false;
    for s in &runbook.steps[..=idx] {
        match s.unprotected {
            Some(WindowEdge::Opens) => open = true,
            // The step that closes the window is inside it until it completes.
            Some(WindowEdge::Closes) if s.id != step.id => open = false,
            _ => {}
        }
    }
    if open {
        Priority::OpenWindow
    } else if idx == 0 {
        Priority::NewTarget
    } else {
        Priority::Step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_an_open_window_first_and_a_new_target_last() {
        let text = r#"runbook: r
version: 1
steps:
  - id: check
    uses: wait
    with: { duration: 1s }
  - id: prepare
    uses: wait
    with: { duration: 1s }
  - id: drop-link
    uses: wait
    with: { duration: 1s }
    unprotected: opens
  - id: seed
    uses: wait
    with: { duration: 1s }
  - id: relink
    uses: wait
    with: { duration: 1s }
    unprotected: closes
  - id: tidy
    uses: wait
    with: { duration: 1s }
"#;
        let rb = crate::runbook::parse(text, "t").unwrap();
        let got: Vec<(String, Priority)> = rb
            .steps
            .iter()
            .map(|s| (s.id.as_str().to_owned(), request_priority(&rb, s)))
            .collect();
        let want = [
            ("check", Priority::NewTarget),
            ("prepare", Priority::Step),
            ("drop-link", Priority::OpenWindow),
            ("seed", Priority::OpenWindow),
            ("relink", Priority::OpenWindow),
            ("tidy", Priority::Step),
        ];
        let want: Vec<(String, Priority)> = want.iter().map(|(s, p)| ((*s).to_owned(), *p)).collect();
        assert_eq!(got, want);
    }
}
