package main

import (
	"os/exec"
)

func linkUp(name string) error {
	return exec.Command("ip", "link", "set", "dev", name, "up").Run()
}
