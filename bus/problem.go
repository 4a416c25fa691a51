package bus

import "sync/atomic"

// Problem holds why a component is not doing its work right now (a stream
// deleted and not yet recreated, say), or nil, for readiness checks to
// report while it lasts. The zero value holds nil. Safe for concurrent use.
type Problem struct{ p atomic.Pointer[error] }

// Set records err as the problem; nil clears it.
func (p *Problem) Set(err error) {
	if err == nil {
		p.p.Store(nil)
		return
	}
	p.p.Store(&err)
}

// Err returns the problem, or nil.
func (p *Problem) Err() error {
	if e := p.p.Load(); e != nil {
		return *e
	}
	return nil
}
