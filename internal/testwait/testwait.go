// Package testwait is the one way tests wait for a condition: poll it until
// it holds, and fail, saying what did not happen, if it has not within 10s.
// Tests wait for a condition, never for a time.
package testwait

import (
	"errors"
	"testing"
	"time"
)

// Within is how long a condition may take before the test fails.
const Within = 10 * time.Second

// Eventually polls cond until it holds, failing the test after Within with
// "timed out waiting for what".
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyNil(t, func() error {
		if cond() {
			return nil
		}
		return errors.New("timed out waiting for " + what)
	})
}

// EventuallyNil polls cond until it returns nil, failing the test after
// Within with the last error it returned (which says what was seen).
func EventuallyNil(t testing.TB, cond func() error) {
	t.Helper()
	EventuallyNilWithin(t, Within, cond)
}

// EventuallyNilWithin is EventuallyNil for a condition that may take
// longer than Within by design (it waits out a lease, say): it fails after
// within.
func EventuallyNilWithin(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
