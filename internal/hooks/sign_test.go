package hooks

import "testing"

// The signature of a known call, as computed by Node's crypto with the
// check in docs/security.md: the format cannot drift from the docs.
func TestSignKnownVector(t *testing.T) {
	got := Sign("webhook-secret-0123", "1767225600", []byte(`{"events":[]}`))
	if want := "v1=c7e1da0f93a765f9a4fad3dc070ea0747e6991a572a26989e22595bcecb8b88c"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
