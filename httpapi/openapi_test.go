package httpapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// servedByServe are the routes `codi2 serve` answers itself, in front of
// the Handler, which the document describes too.
var servedByServe = []string{"GET /healthz", "GET /readyz"}

// TestOpenAPI_MatchesRoutes checks that every route the mux serves is in
// openapi.json, and every operation there is served.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	data, err := assets.ReadFile("openapi.json")
	require.NoError(t, err)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			assert.NotEmpty(t, op["responses"], "%s %s has no responses", method, path)
			assert.NotEmpty(t, op["summary"], "%s %s has no summary", method, path)
		}
	}
	served := append(Routes(), servedByServe...)
	slices.Sort(documented)
	slices.Sort(served)
	assert.Equal(t, served, documented)
	// Path parameters are declared.
	for _, r := range routes {
		_, path, _ := strings.Cut(r.pattern, " ")
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") {
				assert.Contains(t, string(data), `"name": "`+strings.Trim(seg, "{}")+`"`, r.pattern)
			}
		}
	}
}
