package state

import (
	"fmt"
	"time"
)

// MaxTTL is the longest lease a command may ask for (ttl_ms at most
// MaxTTL in milliseconds), so that an expiry time always fits the lease
// index.
const MaxTTL = maxTTL

// CheckTTL reports whether d is a lease duration a command can carry
// exactly: a whole number of milliseconds (the unit of the contract's
// ttl_ms) from 1 ms to MaxTTL. The error starts "ttl <d>: " and names the
// bound; clients check before sending, so that a user reads it in their
// own units rather than as the service's rejection.
func CheckTTL(d time.Duration) error {
	switch {
	case d <= 0:
		return fmt.Errorf("ttl %v: a lease needs a positive duration such as 15m", d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("ttl %v: leases are whole milliseconds (ttl_ms)", d)
	case d > MaxTTL:
		return fmt.Errorf("ttl %v is above the longest lease, %v (100 years)", d, MaxTTL)
	}
	return nil
}
