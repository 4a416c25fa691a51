package audit

import "time"

// Metrics receives what the service does, for monitoring (Config.Metrics;
// nil turns it off). The service calls it after a store transaction
// committed, never inside one, so an implementation must not block; one
// shared between services must be safe for concurrent use.
type Metrics interface {
	// Appended reports one committed transaction that appended records
	// (events, and lost-event records for sequences missing from the
	// stream): how many, and how long the transaction took.
	Appended(records int, took time.Duration)
}

// observeAppend reports a committed chunk of n records to cfg.Metrics.
func (s *Service) observeAppend(n int, took time.Duration) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Appended(n, took)
	}
}
