/* pagefit's ld.so audit module for `pagefit run --fix-deps` (rtld-audit(7)).
 *
 * ld.so calls la_objsearch for every library it is about to look for: the
 * name as asked (DT_NEEDED or dlopen, with or without a slash) and then every
 * candidate path of its search. For each candidate that exists, this module
 * asks `pagefit fix-dep` for the copy to load instead: the library itself if
 * it is ok at the page size, else its fixed copy in pagefit's cache (fixed
 * once, then reused). So libraries that no static closure can know, those a
 * program dlopens, are fixed too.
 *
 * pagefit passes its own path and the page size in PAGEFIT_EXE and
 * PAGEFIT_PAGE_SIZE, and the cache directory in PAGEFIT_CACHE (copies there
 * are loaded as they are). Any failure leaves the name unchanged: ld.so then
 * does what it would have done without pagefit. pagefit runs without
 * LD_AUDIT: audited, its own libraries would each start another pagefit.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* This process's environment without LD_AUDIT, for pagefit. */
static char **environment_without_audit(void)
{
    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    char **copy = calloc(count + 1, sizeof *copy);
    if (copy == NULL)
        return NULL;
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "LD_AUDIT=", strlen("LD_AUDIT=")) != 0)
            copy[kept++] = environ[i];
    return copy;
}

unsigned int la_version(unsigned int version)
{
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

/* Runs `pagefit fix-dep --page-size P PATH` and returns its one line of
 * output (the path to load), or NULL. */
static char *copy_to_load(const char *path)
{
    const char *pagefit = getenv("PAGEFIT_EXE");
    const char *page_size = getenv("PAGEFIT_PAGE_SIZE");
    if (pagefit == NULL || page_size == NULL)
        return NULL;
    char **environment = environment_without_audit();
    if (environment == NULL)
        return NULL;
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        free(environment);
        return NULL;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    char *argv[] = {"pagefit", "fix-dep", "--page-size", (char *)page_size, (char *)path, NULL};
    pid_t child;
    int spawned = posix_spawn(&child, pagefit, &actions, NULL, argv, environment);
    posix_spawn_file_actions_destroy(&actions);
    free(environment);
    close(out[1]);
    if (spawned != 0) {
        close(out[0]);
        return NULL;
    }
    char line[4096];
    size_t used = 0;
    ssize_t got;
    while (used < sizeof line - 1 && (got = read(out[0], line + used, sizeof line - 1 - used)) > 0)
        used += (size_t)got;
    close(out[0]);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return NULL;
    line[used] = '\0';
    char *end = strchr(line, '\n');
    if (end != NULL)
        *end = '\0';
    return line[0] != '\0' ? strdup(line) : NULL;
}

char *la_objsearch(const char *name, uintptr_t *cookie, unsigned int flag)
{
    (void)cookie;
    (void)flag;
    const char *cache = getenv("PAGEFIT_CACHE");
    if (strchr(name, '/') == NULL || access(name, R_OK) != 0)
        return (char *)name;
    if (cache != NULL && strncmp(name, cache, strlen(cache)) == 0)
        return (char *)name;
    char *copy = copy_to_load(name);
    return copy != NULL ? copy : (char *)name;
}
