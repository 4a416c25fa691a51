package v1sim

import (
	"fmt"
	"time"
)

// The actions of v1's task-assignment flow (ADR-028, "Old Way"). Constants,
// so safe for concurrent use.
const (
	ActionTaskAssign   = "TASK_ASSIGN"
	ActionTaskAck      = "TASK_ACK"
	ActionStatusUpdate = "STATUS_UPDATE"
)

// Tasks is the number of task ids writers share: ADR-000 through ADR-099.
// A constant, so safe for concurrent use.
const Tasks = 100

// Event is one line of the v1 log. Writer and N identify the event for
// Verify: writer w appends events N = 0..EventsPerWriter-1. An Event is a
// plain value, safe to share.
type Event struct {
	TS     time.Time `json:"ts"` // RFC 3339 with nanoseconds, UTC
	Action string    `json:"action"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Task   string    `json:"task"`
	Status string    `json:"status,omitempty"` // STATUS_UPDATE only
	Writer int       `json:"writer"`
	N      int       `json:"n"`
	Pad    string    `json:"pad,omitempty"`
}

// TaskID returns the id of task k modulo Tasks, as written in the log. It is
// safe for concurrent use.
func TaskID(k int) string {
	return fmt.Sprintf("ADR-%03d", k%Tasks)
}

// newEvent returns event n of writer w. Every writer walks the v1 flow
// assign, ack, status update over the shared tasks; writer w plays agent-(w+1).
func newEvent(w, n int, pad string, ts time.Time) Event {
	k := n / 3 // one assign/ack/update triple per task visit
	agent := fmt.Sprintf("agent-%d", w+1)
	e := Event{TS: ts.UTC(), Task: TaskID(k), Writer: w, N: n, Pad: pad}
	switch n % 3 {
	case 0:
		e.Action, e.From, e.To = ActionTaskAssign, "orchestrator", agent
	case 1:
		e.Action, e.From = ActionTaskAck, agent
	default:
		e.Action, e.From = ActionStatusUpdate, agent
		e.Status = statusOf(k / Tasks)
	}
	return e
}

// statusOf is the status set on pass p over the tasks. It changes every pass,
// so later updates overwrite earlier ones and ScanState's answer depends on
// which line is last.
func statusOf(pass int) string {
	switch pass % 3 {
	case 0:
		return "in_progress"
	case 1:
		return "review"
	default:
		return "done"
	}
}
