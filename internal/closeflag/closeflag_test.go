package closeflag

import "testing"

func TestSetOnce(t *testing.T) {
	var f Flag
	if f {
		t.Fatal("a new flag reads closed")
	}
	if !f.Set() || !bool(f) {
		t.Fatal("the first Set did not close it")
	}
	if f.Set() || !bool(f) {
		t.Fatal("a second Set reported the first close, or reopened it")
	}
}
