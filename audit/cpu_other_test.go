//go:build !unix

package audit

import "time"

// processCPU is 0 where the platform does not report CPU time.
func processCPU() time.Duration { return 0 }
