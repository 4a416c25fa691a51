package state

import "time"

// Metrics receives what the service does, for monitoring (Config.Metrics;
// nil turns it off). The service calls it from its apply loop after a
// store transaction committed, never inside one, so an implementation must
// not block; one shared between services must be safe for concurrent use.
type Metrics interface {
	// Committed reports one committed batch of commands: how many it
	// applied or rejected, and how long its store transaction took,
	// retries included.
	Committed(commands int, took time.Duration)
	// Outcome reports the outcome of one command, as its event says:
	// status applied or rejected (with reason), or lost for commands
	// missing from the stream. A lease that ended is op OpExpire, status
	// applied.
	Outcome(op Op, status Status, reason Reason)
}

// observeBatch reports a committed batch of n commands to cfg.Metrics.
func (s *Service) observeBatch(n int, took time.Duration) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Committed(n, took)
	}
}

// observeOutcome reports o to cfg.Metrics.
func (s *Service) observeOutcome(o *outcome) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Outcome(o.op, o.status, o.reason)
	}
}
