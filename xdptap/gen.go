package xdptap

//go:generate sh gen.sh
