/*
 * A stub libnvidia-ml.so.1 for tests: NVML's C ABI (names, versioned variants, struct layouts and
 * return codes as in NVIDIA's nvml.h) answering from a text file instead of a GPU.
 *
 * Without that file nvmlInit answers DRIVER_NOT_LOADED, as the real library does on a host without
 * the kernel module. The file named by $GPULSE_NVML_STUB holds `key=value` lines and is read again whenever it changes,
 * so a test can lose a GPU or queue an XID under a running agent:
 *
 *   driver=550.90.07          cuda=12040          gpus=2
 *   gpu0.name=...  gpu0.uuid=...  gpu0.pci=...    scalar readings, see the getters below
 *   gpu0.field.<id>=<value>   a FieldValues value (absent: NOT_SUPPORTED); .<id>.<scope> per link
 *   gpu0.error.<function>=<nvmlReturn_t>   every call of that function on that GPU fails so
 *   error.<function>=<nvmlReturn_t>        the same, for calls without a GPU (init, system, events)
 *   gpu0.delay_ms.<function>=<ms>          each call of it takes that long (a slow driver call)
 *   gpu0.lost=1               every call on that GPU answers GPU_IS_LOST
 *   gpu0.procs=<pid>:<bytes>,...           compute processes; with MIG, per instance below
 *   gpu0.mig=1  gpu0.mig.count=2  gpu0.mig0.uuid=...  gpu0.mig0.gi=1  gpu0.mig0.ci=0
 *   gpu0.mig0.memory_total=...  gpu0.mig0.memory_used=...  gpu0.mig0.procs=...
 *   xid=<gpu>:<xid>           one XID critical-error event per line, each delivered once
 *
 * Every call is counted per function and per GPU; gpulseStubCallCount() reads the counts in-process
 * and nvmlShutdown() writes them to $GPULSE_NVML_STUB_COUNTS for a test watching another process.
 * Built with -DGPULSE_STUB_OLD_DRIVER it lacks what R470-era drivers lack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_UNKNOWN = 999,
};
#define NVML_VALUE_TYPE_UNSIGNED_LONG_LONG 3
#define NVML_CLOCK_SM 1
#define NVML_EVENT_TYPE_XID 0x8ULL
#define MAX_GPUS 16
#define MAX_MIG 7
#define MAX_KEYS 4096

typedef struct nvmlDevice_st {
    int gpu;
    int mig; /* -1 for the whole GPU */
} * nvmlDevice_t;
typedef struct nvmlEventSet_st {
    int unused;
} * nvmlEventSet_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;
typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    signed long long sllVal;
    signed int siVal;
    unsigned short usVal;
} nvmlValue_t;
typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    unsigned int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

/* -- the configuration ------------------------------------------------------------------------ */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *keys[MAX_KEYS], *vals[MAX_KEYS];
static int nkeys;
static struct timespec loaded_mtime;
static off_t loaded_size = -1;
static char loaded_path[4096];
static int initialised;
static struct nvmlDevice_st devices[MAX_GPUS], mig_devices[MAX_GPUS][MAX_MIG];
static struct nvmlEventSet_st the_event_set;
static int xids_delivered; /* xid= lines already handed out */

#define MAX_COUNTED 128
static char counted_fn[MAX_COUNTED][64];
static unsigned long counts[MAX_COUNTED][MAX_GPUS + 1]; /* last column: calls without a GPU */

static void clear_config(void) {
    for (int i = 0; i < nkeys; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    nkeys = 0;
}

/* Read the file again if it changed; under the lock. */
static void reload(void) {
    const char *path = getenv("GPULSE_NVML_STUB");
    struct stat st;
    if (path == NULL || stat(path, &st) != 0) {
        /* No file: a library with no driver behind it (see nvmlInitWithFlags). */
        clear_config();
        loaded_path[0] = 0;
        loaded_size = -1;
        return;
    }
    if (strcmp(path, loaded_path) == 0 && st.st_size == loaded_size && st.st_mtim.tv_sec == loaded_mtime.tv_sec &&
        st.st_mtim.tv_nsec == loaded_mtime.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    clear_config();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0 && nkeys < MAX_KEYS) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *eq = strchr(line, '=');
        if (line[0] == '#' || eq == NULL) continue;
        *eq = 0;
        keys[nkeys] = strdup(line);
        vals[nkeys] = strdup(eq + 1);
        nkeys++;
    }
    free(line);
    fclose(f);
    if (strcmp(path, loaded_path) != 0) xids_delivered = 0; /* another test's file: its own XIDs */
    snprintf(loaded_path, sizeof loaded_path, "%s", path);
    loaded_size = st.st_size;
    loaded_mtime = st.st_mtim;
}

static const char *get(const char *key) {
    for (int i = nkeys - 1; i >= 0; i--) /* a later line wins */
        if (strcmp(keys[i], key) == 0) return vals[i];
    return NULL;
}

static const char *getf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *getf(const char *fmt, ...) {
    char key[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    return get(key);
}

static unsigned long long num(const char *v, unsigned long long dflt) {
    return v == NULL ? dflt : strtoull(v, NULL, 0);
}

static int gpu_count(void) {
    int n = (int)num(get("gpus"), 1);
    return n > MAX_GPUS ? MAX_GPUS : n;
}

static void count(const char *fn, int gpu) {
    int col = gpu < 0 ? MAX_GPUS : gpu;
    for (int i = 0; i < MAX_COUNTED; i++) {
        if (counted_fn[i][0] == 0) snprintf(counted_fn[i], sizeof counted_fn[i], "%s", fn);
        if (strcmp(counted_fn[i], fn) == 0) {
            counts[i][col]++;
            return;
        }
    }
}

static void sleep_ms(unsigned long long ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Every entry point starts here: count the call, apply the configured delay, then the configured
 * failure. gpu < 0: no device.
 */
static nvmlReturn_t enter(const char *fn, int gpu) {
    pthread_mutex_lock(&lock);
    reload();
    count(fn, gpu);
    unsigned long long delay = num(gpu < 0 ? getf("delay_ms.%s", fn) : getf("gpu%d.delay_ms.%s", gpu, fn), 0);
    if (delay) { /* sleep outside the lock, so one slow GPU does not hold up the others */
        pthread_mutex_unlock(&lock);
        sleep_ms(delay);
        pthread_mutex_lock(&lock);
        reload(); /* the test may have changed the file while this call was stuck */
    }
    nvmlReturn_t ret = NVML_SUCCESS;
    const char *err = gpu < 0 ? getf("error.%s", fn) : getf("gpu%d.error.%s", gpu, fn);
    if (!initialised && strcmp(fn, "nvmlInitWithFlags") != 0 && strcmp(fn, "nvmlInit_v2") != 0)
        ret = NVML_ERROR_UNINITIALIZED;
    else if (gpu >= 0 && num(getf("gpu%d.lost", gpu), 0))
        ret = NVML_ERROR_GPU_IS_LOST;
    else if (err != NULL)
        ret = (nvmlReturn_t)num(err, NVML_ERROR_UNKNOWN);
    pthread_mutex_unlock(&lock);
    return ret;
}

#define DEVICE(fn, d)                                                    \
    if ((d) == NULL) return NVML_ERROR_INVALID_ARGUMENT;                 \
    nvmlReturn_t ret_ = enter(fn, (d)->gpu);                             \
    if (ret_ != NVML_SUCCESS) return ret_;                               \
    const int g = (d)->gpu;                                              \
    (void)g;

#define SYSTEM(fn)                      \
    nvmlReturn_t ret_ = enter(fn, -1);  \
    if (ret_ != NVML_SUCCESS) return ret_;

/* A device's key: gpuN.<name> for the GPU, gpuN.migM.<name> for one of its MIG devices. */
static const char *dget(nvmlDevice_t d, const char *name) {
    return d->mig < 0 ? getf("gpu%d.%s", d->gpu, name) : getf("gpu%d.mig%d.%s", d->gpu, d->mig, name);
}

static unsigned long long dnum(nvmlDevice_t d, const char *name, unsigned long long dflt) {
    pthread_mutex_lock(&lock);
    unsigned long long v = num(dget(d, name), dflt);
    pthread_mutex_unlock(&lock);
    return v;
}

static nvmlReturn_t dstr(nvmlDevice_t d, const char *name, const char *dflt, char *out, unsigned int len) {
    pthread_mutex_lock(&lock);
    const char *v = dget(d, name);
    if (v == NULL) v = dflt;
    nvmlReturn_t ret = NVML_SUCCESS;
    if (strlen(v) + 1 > len)
        ret = NVML_ERROR_INSUFFICIENT_SIZE;
    else
        snprintf(out, len, "%s", v);
    pthread_mutex_unlock(&lock);
    return ret;
}

/* A uint getter reading one key, with NOT_SUPPORTED when the file leaves the key out and has no default. */
#define UINT_GETTER(fn, key, dflt)                                  \
    nvmlReturn_t fn(nvmlDevice_t d, unsigned int *out) {            \
        DEVICE(#fn, d);                                             \
        if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;        \
        *out = (unsigned int)dnum(d, key, dflt);                    \
        return NVML_SUCCESS;                                        \
    }

/* -- init and system -------------------------------------------------------------------------- */
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    nvmlReturn_t ret = enter("nvmlInitWithFlags", -1);
    if (ret != NVML_SUCCESS) return ret;
    pthread_mutex_lock(&lock);
    if (loaded_path[0] == 0) {
        pthread_mutex_unlock(&lock);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    for (int i = 0; i < MAX_GPUS; i++) {
        devices[i].gpu = i;
        devices[i].mig = -1;
        for (int m = 0; m < MAX_MIG; m++) {
            mig_devices[i][m].gpu = i;
            mig_devices[i][m].mig = m;
        }
    }
    initialised = 1;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

static void write_counts(void) {
    const char *path = getenv("GPULSE_NVML_STUB_COUNTS");
    if (path == NULL) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return;
    for (int i = 0; i < MAX_COUNTED && counted_fn[i][0]; i++)
        for (int c = 0; c <= MAX_GPUS; c++)
            if (counts[i][c]) fprintf(f, "%s %d %lu\n", counted_fn[i], c == MAX_GPUS ? -1 : c, counts[i][c]);
    fclose(f);
    rename(tmp, path);
}

nvmlReturn_t nvmlShutdown(void) {
    SYSTEM("nvmlShutdown");
    pthread_mutex_lock(&lock);
    initialised = 0;
    write_counts();
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *out, unsigned int len) {
    SYSTEM("nvmlSystemGetDriverVersion");
    pthread_mutex_lock(&lock);
    const char *v = get("driver");
    snprintf(out, len, "%s", v ? v : "550.90.07");
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *out) {
    SYSTEM("nvmlSystemGetCudaDriverVersion");
    pthread_mutex_lock(&lock);
    *out = (int)num(get("cuda"), 12040);
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *out) {
    SYSTEM("nvmlDeviceGetCount_v2");
    pthread_mutex_lock(&lock);
    *out = (unsigned int)gpu_count();
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *out) {
    SYSTEM("nvmlDeviceGetHandleByIndex_v2");
    pthread_mutex_lock(&lock);
    int n = gpu_count();
    pthread_mutex_unlock(&lock);
    if ((int)index >= n || out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *out = &devices[index];
    return NVML_SUCCESS;
}

/* -- inventory -------------------------------------------------------------------------------- */
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *out, unsigned int len) {
    DEVICE("nvmlDeviceGetName", d);
    return dstr(d, "name", "NVIDIA H100 80GB HBM3", out, len);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *out, unsigned int len) {
    DEVICE("nvmlDeviceGetUUID", d);
    return dstr(d, "uuid", "GPU-00000000-0000-0000-0000-000000000000", out, len);
}

nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t d, char *out, unsigned int len) {
    DEVICE("nvmlDeviceGetSerial", d);
    return dstr(d, "serial", "1654922001234", out, len);
}

nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t d, char *out, unsigned int len) {
    DEVICE("nvmlDeviceGetVbiosVersion", d);
    return dstr(d, "vbios", "96.00.99.00.01", out, len);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *out) {
    DEVICE("nvmlDeviceGetPciInfo_v3", d);
    memset(out, 0, sizeof *out);
    nvmlReturn_t ret = dstr(d, "pci", "00000000:18:00.0", out->busId, sizeof out->busId);
    unsigned int domain = 0, bus = 0, dev = 0;
    sscanf(out->busId, "%x:%x:%x", &domain, &bus, &dev);
    out->domain = domain;
    out->bus = bus;
    out->device = dev;
    out->pciDeviceId = (unsigned int)dnum(d, "pci_device_id", 0x233010DE);
    snprintf(out->busIdLegacy, sizeof out->busIdLegacy, "%04X:%02X:%02X.0", domain, bus, dev);
    return ret;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned int *lo, unsigned int *hi) {
    DEVICE("nvmlDeviceGetPowerManagementLimitConstraints", d);
    *lo = (unsigned int)dnum(d, "power_min_mw", 200000);
    *hi = (unsigned int)dnum(d, "power_max_mw", 700000);
    return NVML_SUCCESS;
}

UINT_GETTER(nvmlDeviceGetPowerManagementDefaultLimit, "power_default_mw", 700000)
UINT_GETTER(nvmlDeviceGetPersistenceMode, "persistence", 1)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, "pcie_max_gen", 5)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkWidth, "pcie_max_width", 16)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, "pcie_gen", 5)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkWidth, "pcie_width", 16)
UINT_GETTER(nvmlDeviceGetFanSpeed, "fan", 0)
UINT_GETTER(nvmlDeviceGetPowerUsage, "power_mw", 612000)
UINT_GETTER(nvmlDeviceGetEnforcedPowerLimit, "power_limit_mw", 700000)
UINT_GETTER(nvmlDeviceGetGpuInstanceId, "gi", 0)
UINT_GETTER(nvmlDeviceGetComputeInstanceId, "ci", 0)

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    DEVICE("nvmlDeviceGetMigMode", d);
    *current = *pending = (unsigned int)dnum(d, "mig", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t d, int *out) {
    DEVICE("nvmlDeviceGetPerformanceState", d);
    *out = (int)dnum(d, "pstate", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *out) {
    DEVICE("nvmlDeviceGetTemperature", d);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *out = (unsigned int)dnum(d, "temperature", 64);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *out) {
    DEVICE("nvmlDeviceGetClockInfo", d);
    *out = (unsigned int)(type == NVML_CLOCK_SM ? dnum(d, "sm_clock", 1980) : dnum(d, "mem_clock", 2619));
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, int type, unsigned int *out) {
    DEVICE("nvmlDeviceGetMaxClockInfo", d);
    *out = (unsigned int)(type == NVML_CLOCK_SM ? dnum(d, "sm_clock_max", 1980) : dnum(d, "mem_clock_max", 2619));
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *out) {
    DEVICE("nvmlDeviceGetUtilizationRates", d);
    out->gpu = (unsigned int)dnum(d, "util_gpu", 97);
    out->memory = (unsigned int)dnum(d, "util_mem", 41);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *out) {
    DEVICE("nvmlDeviceGetMemoryInfo", d);
    out->total = dnum(d, "memory_total", 80ULL << 30);
    out->used = dnum(d, "memory_used", 66ULL << 30);
    out->free = out->total - out->used;
    return NVML_SUCCESS;
}

#ifndef GPULSE_STUB_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *out) {
    DEVICE("nvmlDeviceGetMemoryInfo_v2", d);
    if (out->version != 0x02000028) return NVML_ERROR_INVALID_ARGUMENT; /* nvmlMemory_v2 */
    out->total = dnum(d, "memory_total", 80ULL << 30);
    out->reserved = dnum(d, "memory_reserved", 0);
    out->used = dnum(d, "memory_used", 66ULL << 30);
    out->free = out->total - out->used - out->reserved;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *out) {
    DEVICE("nvmlDeviceGetCurrentClocksEventReasons", d);
    *out = dnum(d, "clocks_event_reasons", 0);
    return NVML_SUCCESS;
}
#endif

/* The name before R535, kept by later drivers too. */
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *out) {
    DEVICE("nvmlDeviceGetCurrentClocksThrottleReasons", d);
    *out = dnum(d, "clocks_event_reasons", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *out) {
    DEVICE("nvmlDeviceGetTotalEnergyConsumption", d);
    *out = dnum(d, "energy_mj", 123456789);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *values) {
    DEVICE("nvmlDeviceGetFieldValues", d);
    if (count < 0 || values == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        const char *s = getf("gpu%d.field.%u.%u", g, v->fieldId, v->scopeId);
        if (s == NULL) s = getf("gpu%d.field.%u", g, v->fieldId);
        v->timestamp = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
        v->latencyUsec = 0;
        if (s == NULL) {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            continue;
        }
        v->nvmlReturn = NVML_SUCCESS;
        v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
        v->value.ullVal = strtoull(s, NULL, 0);
    }
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

/* "pid:bytes,pid:bytes" into NVML's two-call protocol: count first, then the array. */
static nvmlReturn_t processes(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *out) {
    pthread_mutex_lock(&lock);
    nvmlProcessInfo_t found[64];
    unsigned int have = 0;
    int migs = d->mig < 0 && num(getf("gpu%d.mig", d->gpu), 0) ? (int)num(getf("gpu%d.mig.count", d->gpu), 0) : 0;
    /* The whole GPU with MIG on lists every instance's processes, each tagged with its instance. */
    for (int m = (d->mig < 0 ? -1 : d->mig); m < (d->mig < 0 ? migs : d->mig + 1); m++) {
        const char *s = m < 0 ? getf("gpu%d.procs", d->gpu) : getf("gpu%d.mig%d.procs", d->gpu, m);
        unsigned int gi = m < 0 ? 0xFFFFFFFFu : (unsigned int)num(getf("gpu%d.mig%d.gi", d->gpu, m), 0);
        unsigned int ci = m < 0 ? 0xFFFFFFFFu : (unsigned int)num(getf("gpu%d.mig%d.ci", d->gpu, m), 0);
        while (s != NULL && *s && have < 64) {
            char *end;
            unsigned long pid = strtoul(s, &end, 10);
            unsigned long long bytes = *end == ':' ? strtoull(end + 1, &end, 10) : 0;
            found[have++] = (nvmlProcessInfo_t){(unsigned int)pid, bytes, gi, ci};
            s = *end == ',' ? end + 1 : end;
            if (*end != ',') break;
        }
    }
    pthread_mutex_unlock(&lock);
    if (*n < have || (out == NULL && have > 0)) {
        *n = have;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *n = have;
    if (out != NULL) memcpy(out, found, have * sizeof *found);
    return NVML_SUCCESS;
}

#ifndef GPULSE_STUB_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *out) {
    DEVICE("nvmlDeviceGetComputeRunningProcesses_v3", d);
    return processes(d, n, out);
}
#endif

/* The pre-R510 layout had no instance ids; an old driver offers only this. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v1_t *out) {
    DEVICE("nvmlDeviceGetComputeRunningProcesses", d);
    nvmlProcessInfo_t full[64];
    unsigned int want = *n > 64 ? 64 : *n;
    nvmlReturn_t ret = processes(d, &want, out == NULL ? NULL : full);
    *n = want;
    if (ret == NVML_SUCCESS && out != NULL)
        for (unsigned int i = 0; i < want; i++) out[i] = (nvmlProcessInfo_v1_t){full[i].pid, full[i].usedGpuMemory};
    return ret;
}

/* -- MIG -------------------------------------------------------------------------------------- */
nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *out) {
    DEVICE("nvmlDeviceGetMaxMigDeviceCount", d);
    *out = dnum(d, "mig", 0) ? MAX_MIG : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *out) {
    DEVICE("nvmlDeviceGetMigDeviceHandleByIndex", d);
    if (!dnum(d, "mig", 0)) return NVML_ERROR_NOT_SUPPORTED;
    if (index >= MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= dnum(d, "mig.count", 0)) return NVML_ERROR_NOT_FOUND; /* an empty slot */
    *out = &mig_devices[g][index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned int *out) {
    DEVICE("nvmlDeviceIsMigDeviceHandle", d);
    *out = d->mig >= 0;
    return NVML_SUCCESS;
}

/* -- events ----------------------------------------------------------------------------------- */
nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t d, unsigned long long *out) {
    DEVICE("nvmlDeviceGetSupportedEventTypes", d);
    *out = dnum(d, "events", NVML_EVENT_TYPE_XID);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *out) {
    SYSTEM("nvmlEventSetCreate");
    *out = &the_event_set;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
    DEVICE("nvmlDeviceRegisterEvents", d);
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if ((types & dnum(d, "events", NVML_EVENT_TYPE_XID)) != types) return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

/* The next undelivered xid= line, if any; under the lock. */
static int next_xid(int *gpu, unsigned long long *xid) {
    int seen = 0;
    for (int i = 0; i < nkeys; i++) {
        if (strcmp(keys[i], "xid") != 0) continue;
        if (seen++ < xids_delivered) continue;
        xids_delivered++;
        char *end;
        *gpu = (int)strtol(vals[i], &end, 10);
        *xid = *end == ':' ? strtoull(end + 1, NULL, 10) : 0;
        return *gpu >= 0 && *gpu < MAX_GPUS;
    }
    return 0;
}

static nvmlReturn_t event_wait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    if (set == NULL || data == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int gpu;
        unsigned long long xid;
        pthread_mutex_lock(&lock);
        reload();
        int got = initialised && next_xid(&gpu, &xid);
        int up = initialised;
        pthread_mutex_unlock(&lock);
        if (!up) return NVML_ERROR_UNINITIALIZED;
        if (got) {
            *data = (nvmlEventData_t){&devices[gpu], NVML_EVENT_TYPE_XID, xid, 0xFFFFFFFFu, 0xFFFFFFFFu};
            return NVML_SUCCESS;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long waited = (now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited >= timeout_ms) return NVML_ERROR_TIMEOUT;
        /* The real call sleeps in the kernel; polling the file faster would make the stub, not the
           agent, the cost a benchmark measures. 20 ms is still far inside the XID latency target. */
        sleep_ms(20);
    }
}

#ifndef GPULSE_STUB_OLD_DRIVER
nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    SYSTEM("nvmlEventSetWait_v2");
    return event_wait(set, data, timeout_ms);
}
#endif

nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    SYSTEM("nvmlEventSetWait");
    return event_wait(set, data, timeout_ms);
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    SYSTEM("nvmlEventSetFree");
    return set == NULL ? NVML_ERROR_INVALID_ARGUMENT : NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

/* -- for tests, not part of NVML -------------------------------------------------------------- */
unsigned long gpulseStubCallCount(const char *fn, int gpu) {
    unsigned long total = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_COUNTED && counted_fn[i][0]; i++) {
        if (fn != NULL && strcmp(counted_fn[i], fn) != 0) continue;
        for (int c = 0; c <= MAX_GPUS; c++)
            if (gpu == -2 || (gpu < 0 ? c == MAX_GPUS : c == gpu)) total += counts[i][c];
    }
    pthread_mutex_unlock(&lock);
    return total;
}

void gpulseStubResetCounts(void) {
    pthread_mutex_lock(&lock);
    memset(counts, 0, sizeof counts);
    pthread_mutex_unlock(&lock);
}

/* Forget the XIDs handed out, for a test that starts its config file afresh. */
void gpulseStubResetXids(void) {
    pthread_mutex_lock(&lock);
    xids_delivered = 0;
    pthread_mutex_unlock(&lock);
}
