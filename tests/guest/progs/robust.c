/* Robust futexes: a thread that exits holding a PTHREAD_MUTEX_ROBUST mutex leaves it
 * to the next locker with EOWNERDEAD (waking one that was already waiting); a
 * hand-made robust list shows the kernel's walk (FUTEX_OWNER_DIED, waiters bit kept,
 * list_op_pending, circular lists bounded) and that bad pointers only end it. */
#include "common.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

static pthread_mutex_t mtx;
static pthread_barrier_t locked;

static void *hold_and_exit(void *arg)
{
    int err = pthread_mutex_lock(&mtx);
    say("thread locked: %s\n", ename(err));
    if (arg)
        pthread_barrier_wait(&locked);
    usleep(arg ? 200 * 1000 : 0);
    return NULL;            /* exits still holding the mutex */
}

static void robust_mutex(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&mtx, &a);

    pthread_t th;
    pthread_create(&th, NULL, hold_and_exit, NULL);
    pthread_join(th, NULL);
    int err = pthread_mutex_lock(&mtx);
    say("lock after the owner exited: %s\n", ename(err));
    say("consistent: %s\n", ename(pthread_mutex_consistent(&mtx)));
    say("unlock: %s\n", ename(pthread_mutex_unlock(&mtx)));
    say("lock again: %s\n", ename(pthread_mutex_lock(&mtx)));
    pthread_mutex_unlock(&mtx);

    /* the main thread is already asleep on the mutex when its owner dies */
    pthread_barrier_init(&locked, NULL, 2);
    pthread_create(&th, NULL, hold_and_exit, (void *)1);
    pthread_barrier_wait(&locked);
    err = pthread_mutex_lock(&mtx);
    say("waiter woken by the owner's death: %s\n", ename(err));
    pthread_join(th, NULL);
    /* not made consistent: unlocking makes it unrecoverable */
    pthread_mutex_unlock(&mtx);
    say("lock after unlock without consistent: %s\n", ename(pthread_mutex_lock(&mtx)));

    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_STALLED);
    pthread_mutex_init(&mtx, &a);
    pthread_create(&th, NULL, hold_and_exit, NULL);
    pthread_join(th, NULL);
    say("trylock of a stalled (non-robust) mutex: %s\n", ename(pthread_mutex_trylock(&mtx)));
}

/* ---- a robust list built by hand */
struct lock {
    struct robust_list link;
    uint32_t word;
};
#define OFFSET ((long)offsetof(struct lock, word) - (long)offsetof(struct lock, link))

static struct robust_list_head head;
static struct lock locks[4];
static uint32_t other_owner;
static uint32_t dead_tid;

static void *raw_list(void *arg)
{
    int mode = (int)(intptr_t)arg;
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    dead_tid = tid;
    head.futex_offset = OFFSET;
    head.list_op_pending = NULL;
    if (mode == 0) {            /* two held, one of another thread, one pending */
        locks[0].word = tid;
        locks[1].word = tid | FUTEX_WAITERS;
        locks[2].word = other_owner;
        locks[3].word = tid;
        head.list.next = &locks[0].link;
        locks[0].link.next = &locks[1].link;
        locks[1].link.next = &locks[2].link;
        locks[2].link.next = &head.list;
        head.list_op_pending = &locks[3].link;
    } else if (mode == 1) {     /* circular: the walk gives up after 2048 entries */
        locks[0].word = tid;
        locks[1].word = tid;
        head.list.next = &locks[0].link;
        locks[0].link.next = &locks[0].link;
        head.list_op_pending = &locks[1].link;
    } else if (mode == 2) {     /* the second entry's next pointer is garbage */
        locks[0].word = tid;
        locks[1].word = tid;
        head.list.next = &locks[0].link;
        locks[0].link.next = (struct robust_list *)16;
    } else {
        syscall(SYS_set_robust_list, (void *)8, sizeof head);
        syscall(SYS_exit, 0);
    }
    if (syscall(SYS_set_robust_list, &head, sizeof head) != 0)
        say("set_robust_list failed: %s\n", ename(errno));
    syscall(SYS_exit, 0);   /* no glibc exit path: only the kernel walks the list */
    return NULL;
}

/* The dying thread's tid is not deterministic: shown as 0x1234. */
static uint32_t shown(uint32_t w)
{
    return dead_tid && (w & FUTEX_TID_MASK) == dead_tid ? (w & ~FUTEX_TID_MASK) | 0x1234 : w;
}

static void raw_run(int mode, const char *label)
{
    memset(locks, 0, sizeof locks);
    memset(&head, 0, sizeof head);
    other_owner = 7;
    pthread_t th;
    pthread_create(&th, NULL, raw_list, (void *)(intptr_t)mode);
    /* SYS_exit skips glibc's thread exit, but the kernel still clears the tid join
     * waits on (CLONE_CHILD_CLEARTID), after walking the robust list */
    pthread_join(th, NULL);
    say("%s: words %#x %#x %#x %#x\n", label, shown(locks[0].word), shown(locks[1].word),
        shown(locks[2].word), shown(locks[3].word));
}

int main(void)
{
    robust_mutex();
    SHOW("set_robust_list bad size", syscall(SYS_set_robust_list, &head, 8));
    raw_run(0, "held, held+waiters, other owner, pending");
    raw_run(1, "circular list");
    raw_run(2, "garbage next pointer");
    raw_run(3, "unmapped head");
    say("survived\n");
    return 0;
}
