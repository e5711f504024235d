// Command toolpath builds a pinned tool the way the tests build it (gotool.Path: `go tool -n`, with the nested
// module's patches when it has any) and prints its path, so that `make tools` warms the very build the tests use.
//
// Usage: go run ./internal/gotool/toolpath <module dir, "" for the main module> <tool>
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/portcullis/portcullis/internal/gotool"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: toolpath <module dir> <tool>")
		os.Exit(2)
	}
	path, err := gotool.Path(context.Background(), os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(path)
}
