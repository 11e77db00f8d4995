package kafka

import (
	"context"
	"testing"
	"time"
)

func TestByteBudget(t *testing.T) {
	b := newByteBudget(100)
	ctx := context.Background()
	a, err := b.acquire(ctx, 60)
	if err != nil || a != 60 {
		t.Fatalf("acquire 60: %d, %v", a, err)
	}
	// A frame larger than the budget takes all of it, once it is free.
	got := make(chan int64, 1)
	go func() {
		n, _ := b.acquire(ctx, 500)
		got <- n
	}()
	// FIFO: a small request behind the large waiter waits too.
	small := make(chan int64, 1)
	time.Sleep(10 * time.Millisecond)
	go func() {
		n, _ := b.acquire(ctx, 10)
		small <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("large frame granted %d while 60 of 100 held", n)
	case <-small:
		t.Fatal("small frame overtook the waiting large one")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(a)
	if n := <-got; n != 100 {
		t.Fatalf("large frame took %d, want the whole budget 100", n)
	}
	b.release(100)
	if n := <-small; n != 10 {
		t.Fatalf("small frame took %d, want 10", n)
	}

	// A canceled waiter leaves the budget as it was.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := b.acquire(cctx, 95)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("canceled acquire returned no error")
	}
	b.release(10)
	if n, err := b.acquire(ctx, 100); err != nil || n != 100 {
		t.Fatalf("after cancel: acquire 100: %d, %v", n, err)
	}
}
