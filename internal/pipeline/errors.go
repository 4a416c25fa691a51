package pipeline

import "errors"

// ErrConfig is wrapped by New for an unusable configuration.
var ErrConfig = errors.New("pipeline: bad configuration")
