package virtqueue

import (
	"errors"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	mem := heapMem(1 << 20)
	m := oneRegion(t, testBase, mem)
	adj := twoRegions(t, mem, 1<<19, 0)
	ok := Config{Size: 256, Desc: testBase, Avail: testBase + 4096, Used: testBase + 8192}
	for _, tc := range []struct {
		name string
		mem  *Memory
		mod  func(c *Config)
		want error
	}{
		{"valid", m, func(c *Config) {}, nil},
		{"valid size 1", m, func(c *Config) { c.Size = 1 }, nil},
		{"valid size 32768", m, func(c *Config) { c.Size = 32768; c.Avail = testBase + 512*1024; c.Used = testBase + 600*1024 }, nil},
		{"valid avail 2-aligned", m, func(c *Config) { c.Avail += 2 }, nil},
		{"valid, rings at the very end", m, func(c *Config) {
			c.Used = testBase + 1<<20 - c.UsedBytes() - 2 // 4-aligned
			c.Avail = testBase + 1<<20 - c.UsedBytes() - 2 - c.AvailBytes()
		}, nil},
		{"size 0", m, func(c *Config) { c.Size = 0 }, ErrInvalidConfig},
		{"size 3", m, func(c *Config) { c.Size = 3 }, ErrInvalidConfig},
		{"size 65535", m, func(c *Config) { c.Size = 65535 }, ErrInvalidConfig},
		{"size 49152", m, func(c *Config) { c.Size = 49152 }, ErrInvalidConfig},
		{"desc misaligned", m, func(c *Config) { c.Desc += 8 }, ErrRingAddress},
		{"avail odd", m, func(c *Config) { c.Avail++ }, ErrRingAddress},
		{"used 2-aligned", m, func(c *Config) { c.Used += 2 }, ErrRingAddress},
		{"desc outside", m, func(c *Config) { c.Desc = 0 }, ErrRingAddress},
		{"desc crosses end", m, func(c *Config) { c.Desc = testBase + 1<<20 - 16*128 }, ErrRingAddress},
		{"avail crosses end", m, func(c *Config) { c.Avail = testBase + 1<<20 - c.AvailBytes() + 2 }, ErrRingAddress},
		{"used crosses end", m, func(c *Config) { c.Used = testBase + 1<<20 - c.UsedBytes() + 2 }, ErrRingAddress},
		{"used huge address", m, func(c *Config) { c.Used = 1<<64 - 4 }, ErrRingAddress},
		{"desc across two adjacent regions", adj, func(c *Config) { c.Desc = testBase + 1<<19 - 16 }, ErrRingAddress},
		{"used across two adjacent regions", adj, func(c *Config) { c.Used = testBase + 1<<19 - 8 }, ErrRingAddress},
		{"nil memory checks shape only", nil, func(c *Config) { c.Desc = 0 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate(tc.mem)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
			if tc.mem != nil {
				_, qerr := NewQueue(tc.mem, c, 0)
				if (qerr == nil) != (err == nil) {
					t.Fatalf("NewQueue = %v, Validate = %v", qerr, err)
				}
			}
		})
	}
}
