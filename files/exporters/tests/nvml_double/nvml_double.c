/*
 * A test double of NVIDIA's NVML library (libnvidia-ml.so.1) for the exporter's tests.
 *
 * It exports the NVML entry points the exporter calls through pynvml, with the argument types and structure
 * layouts pynvml's ctypes declarations define, and answers them from one GPU model table (models.h, generated
 * by gen_models.py from llm_monitor_exporters/gpu/models.py, the table the Python simulation uses too).
 * Values are deterministic functions of the double's clock (CLOCK_MONOTONIC since the last reset, plus what
 * nvml_double_advance() added) and of the GPU index; counters are integrals of smooth rates, so they only grow.
 *
 * Tests steer it through the control API (nvml_double_*): a profile (model + driver + MIG mode) and a GPU
 * count, injected return codes per entry point and GPU, lost GPUs, XID events, failing NVLinks, driver
 * reloads, process lists, field value types and time. All state is behind one mutex; nvmlEventSetWait_v2 and
 * nvmlDeviceGetPcieThroughput sleep without holding it.
 *
 * Build variants: -DND_VARIANT_CURRENT (driver 550) or -DND_VARIANT_R470 (driver 470). The table's
 * missing_symbols of the variant's driver become ND_OMIT_<symbol> macros; those entry points are not compiled
 * at all, so a dlsym() for them fails as on a real library of that generation.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models.h"

#define ND_API __attribute__((visibility("default")))
/* helpers of the GPM entry points, which a variant may leave out */
#define ND_GPM_HELPER __attribute__((unused))

/* ---- NVML's ABI, as pynvml declares it ------------------------------------------------------------------ */

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

enum {
    NVML_VALUE_TYPE_DOUBLE = 0,
    NVML_VALUE_TYPE_UNSIGNED_INT = 1,
    NVML_VALUE_TYPE_UNSIGNED_LONG = 2,
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3,
    NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4,
    NVML_VALUE_TYPE_SIGNED_INT = 5,
    NVML_VALUE_TYPE_UNSIGNED_SHORT = 6,
    NVML_VALUE_TYPE_COUNT = 7,
};

enum {
    FI_NVLINK_CRC_FLIT_TOTAL = 38,
    FI_NVLINK_CRC_DATA_TOTAL = 45,
    FI_NVLINK_REPLAY_TOTAL = 52,
    FI_NVLINK_RECOVERY_TOTAL = 59,
    FI_MEMORY_TEMP = 82,
    FI_NVLINK_LINK_COUNT = 91,
    FI_PCIE_REPLAY_COUNTER = 94,
    FI_NVLINK_THROUGHPUT_DATA_TX = 138,
    FI_NVLINK_THROUGHPUT_DATA_RX = 139,
    FI_POWER_INSTANT = 186,
    FI_PCIE_COUNT_TX_BYTES = 197,
    FI_PCIE_COUNT_RX_BYTES = 198,
};

#define EVENT_XID_CRITICAL 0x8ULL
#define EVENT_SUPPORTED (0x1ULL | 0x2ULL | 0x4ULL | EVENT_XID_CRITICAL | 0x10ULL) /* ECC, P-state, XID, clock */
#define NVML_MEMORY_V2 0x02000028u
#define GPM_METRICS_GET_VERSION 1u
#define GPM_SUPPORT_VERSION 1u
#define GPM_METRIC_MAX 210u
#define UNSET_ID 0xFFFFFFFFu
#define MIB (1024ULL * 1024ULL)

struct nd_device;
struct nd_event_set;
struct nd_gpm_sample;
typedef struct nd_device *nvmlDevice_t;
typedef struct nd_event_set *nvmlEventSet_t;
typedef struct nd_gpm_sample *nvmlGpmSample_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned gpu, memory;
} nvmlUtilization_t;

typedef union {
    double dVal;
    unsigned uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    uint32_t fieldId;
    uint32_t scopeId;
    int64_t timestamp;
    int64_t latencyUsec;
    unsigned valueType;
    unsigned nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

typedef struct {
    unsigned long long referenceTime, violationTime;
} nvmlViolationTime_t;

typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_v2_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

typedef struct {
    const char *shortName, *longName, *unit;
} nvmlGpmMetricInfo_t;

typedef struct {
    unsigned metricId;
    unsigned nvmlReturn;
    double value;
    nvmlGpmMetricInfo_t metricInfo;
} nvmlGpmMetric_t;

typedef struct {
    unsigned version, numMetrics;
    nvmlGpmSample_t sample1, sample2;
    nvmlGpmMetric_t metrics[GPM_METRIC_MAX];
} nvmlGpmMetricsGet_t;

typedef struct {
    unsigned version, isSupportedDevice;
} nvmlGpmSupport_t;

_Static_assert(sizeof(nvmlValue_t) == 8, "nvmlValue_t is 8 bytes");
_Static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t layout");
_Static_assert(sizeof(nvmlMemory_v2_t) == (NVML_MEMORY_V2 & 0xFFFFu), "nvmlMemory_v2_t size is in its version");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t layout");
_Static_assert(sizeof(nvmlProcessInfo_v1_t) == 16, "nvmlProcessInfo_t (v1) layout");
_Static_assert(sizeof(nvmlProcessInfo_v2_t) == 24, "nvmlProcessInfo_v2_t layout");
_Static_assert(sizeof(nvmlEventData_t) == 32, "nvmlEventData_t layout");
_Static_assert(sizeof(nvmlGpmMetric_t) == 40, "nvmlGpmMetric_t layout");
_Static_assert(sizeof(nvmlGpmMetricsGet_t) == 24 + 40 * GPM_METRIC_MAX, "nvmlGpmMetricsGet_t layout");

/* ---- the double's state ----------------------------------------------------------------------------------- */

#define ND_DEVICE_MAGIC 0x4E564456u /* "NVDV" */
#define ND_SET_MAGIC 0x4E564553u
#define ND_SAMPLE_MAGIC 0x4E564753u
#define ND_MAX_RULES 64
#define ND_MAX_PROCS 1024u
#define ND_EVENT_QUEUE 256u
#define ND_FIELD_TYPES 256u
#define ND_UPTIME_S 259200.0 /* the GPUs have been up three days when the double starts */

static const double TAU = 6.283185307179586;

/* A handle. One block of them per "epoch": a driver reload starts a new epoch, i.e. new handles. */
struct nd_device {
    unsigned magic;
    unsigned epoch;
    int index; /* the GPU's index */
    int slot;  /* MIG slot, -1 for the GPU itself */
};

typedef struct nd_epoch {
    unsigned id;
    struct nd_device gpus[ND_MAX_GPUS];
    struct nd_device migs[ND_MAX_GPUS][ND_MAX_MIG_SLOTS];
    struct nd_epoch *next;
} nd_epoch;

typedef struct {
    int gpu;
    unsigned long long xid;
    unsigned gpu_instance, compute_instance;
    int lose_gpu;
} nd_xid;

struct nd_event_set {
    unsigned magic;
    struct nd_event_set *next;
    unsigned long long mask[ND_MAX_GPUS];
    unsigned reg_epoch[ND_MAX_GPUS];
    nd_xid queue[ND_EVENT_QUEUE];
    unsigned head, count;
    int waiters; /* threads inside nvmlEventSetWait_v2 on it */
    int freed;   /* freed (or reset away) while waited on: the last waiter releases it */
};

/* GPM: the curves a sample integrates (one per metric of ND_GPM_METRICS). */
typedef struct {
    double base, amp, period;
} nd_curve;

enum { GPM_PCT, GPM_PCIE_TX, GPM_PCIE_RX, GPM_MEDIA };

typedef struct {
    unsigned id;
    int kind;
    nd_curve curve; /* percent, or a share of the PCIe bandwidth for the PCIe kinds */
    const char *short_name, *long_name, *unit;
} nd_gpm_metric;

static const nd_curve C_LOAD = {0.90, 0.08, 23.0};   /* busy: 90..98 % of the time a kernel runs */
static const nd_curve C_TEMP = {50.0, 16.0, 17.0};   /* degrees C, plus 3 per GPU index modulo 3 */
static const nd_curve C_MEMUSE = {0.78, 0.04, 120.0}; /* share of total - reserved */
static const nd_curve C_MIGUSE = {0.45, 0.10, 90.0};  /* share of a MIG device's memory */
static const nd_curve C_CLOCK = {0.0, 4.0, 13.0};     /* steps of 15 MHz below the maximum SM clock */
static const nd_curve C_FAN = {35.0, 30.0, 31.0};
static const nd_curve C_PCIE_TX = {0.16, 0.04, 37.0}; /* shares of the PCIe bandwidth per direction */
static const nd_curve C_PCIE_RX = {0.26, 0.06, 41.0};
static const nd_curve C_NVL_TX = {0.30, 0.10, 19.0}; /* shares of a link's bandwidth */
static const nd_curve C_NVL_RX = {0.31, 0.10, 21.0};

static const nd_gpm_metric ND_GPM_METRICS[] = {
    {1, GPM_PCT, {90.0, 8.0, 23.0}, "GR_UTIL", "Graphics engine utilization", "%"},
    {2, GPM_PCT, {36.0, 8.0, 29.0}, "SM_UTIL", "SM activity", "%"},
    {3, GPM_PCT, {26.0, 8.0, 31.0}, "SM_OCCUPANCY", "SM occupancy", "%"},
    {4, GPM_PCT, {6.0, 4.0, 17.0}, "INTEGER_UTIL", "Integer pipe utilization", "%"},
    {5, GPM_PCT, {22.0, 6.0, 29.0}, "ANY_TENSOR_UTIL", "Tensor pipes utilization", "%"},
    {6, GPM_PCT, {0.0, 0.2, 41.0}, "DFMA_TENSOR_UTIL", "DFMA tensor utilization", "%"},
    {7, GPM_PCT, {21.0, 6.0, 29.0}, "HMMA_TENSOR_UTIL", "HMMA tensor utilization", "%"},
    {9, GPM_PCT, {0.5, 0.5, 37.0}, "IMMA_TENSOR_UTIL", "IMMA tensor utilization", "%"},
    {10, GPM_PCT, {44.0, 10.0, 19.0}, "DRAM_BW_UTIL", "DRAM bandwidth utilization", "%"},
    {11, GPM_PCT, {0.1, 0.2, 43.0}, "FP64_UTIL", "FP64 pipe utilization", "%"},
    {12, GPM_PCT, {7.0, 4.0, 13.0}, "FP32_UTIL", "FP32 pipe utilization", "%"},
    {13, GPM_PCT, {3.0, 2.0, 11.0}, "FP16_UTIL", "FP16 pipe utilization", "%"},
    {20, GPM_PCIE_TX, {0.16, 0.04, 37.0}, "PCIE_TX", "PCIe transmit bandwidth", "MiB/sec"},
    {21, GPM_PCIE_RX, {0.26, 0.06, 41.0}, "PCIE_RX", "PCIe receive bandwidth", "MiB/sec"},
    {30, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_0_UTIL", "NVDEC 0 utilization", "%"},
    {31, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_1_UTIL", "NVDEC 1 utilization", "%"},
    {32, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_2_UTIL", "NVDEC 2 utilization", "%"},
    {33, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_3_UTIL", "NVDEC 3 utilization", "%"},
    {34, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_4_UTIL", "NVDEC 4 utilization", "%"},
    {35, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_5_UTIL", "NVDEC 5 utilization", "%"},
    {36, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_6_UTIL", "NVDEC 6 utilization", "%"},
    {37, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVDEC_7_UTIL", "NVDEC 7 utilization", "%"},
    {40, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_0_UTIL", "NVJPG 0 utilization", "%"},
    {41, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_1_UTIL", "NVJPG 1 utilization", "%"},
    {42, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_2_UTIL", "NVJPG 2 utilization", "%"},
    {43, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_3_UTIL", "NVJPG 3 utilization", "%"},
    {44, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_4_UTIL", "NVJPG 4 utilization", "%"},
    {45, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_5_UTIL", "NVJPG 5 utilization", "%"},
    {46, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_6_UTIL", "NVJPG 6 utilization", "%"},
    {47, GPM_MEDIA, {0.0, 0.0, 1.0}, "NVJPG_7_UTIL", "NVJPG 7 utilization", "%"},
};
#define ND_GPM_METRIC_COUNT (sizeof ND_GPM_METRICS / sizeof ND_GPM_METRICS[0])

struct nd_gpm_sample {
    unsigned magic;
    struct nd_gpm_sample *next;
    int filled;
    int index;        /* GPU */
    long gpu_instance; /* -1: the whole GPU */
    unsigned epoch;
    double t;
    double integral[ND_GPM_METRIC_COUNT];
};

typedef struct {
    char function[96];
    int gpu;
    int nvml_return;
    int remaining; /* -1: until cleared */
} nd_rule;

typedef struct {
    int set; /* 0: the default processes */
    unsigned count;
    unsigned *pids;
    unsigned long long *used;
} nd_proclist;

typedef struct {
    unsigned pid;
    unsigned long long used;
    unsigned gpu_instance, compute_instance;
} nd_proc;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond; /* CLOCK_MONOTONIC; initialised by the constructor */

static struct {
    int configured;
    int misconfigured; /* the environment named an unusable profile: every init fails */
    const nd_profile *profile;
    const nd_model *model;
    const nd_driver *driver;
    unsigned gpus;
    unsigned pending_gpus; /* nvml_double_set_gpu_count: applied at the next successful init */
    unsigned refcount;
    unsigned epoch;
    nd_epoch *epochs;
    nd_epoch *cur;
    int reload_pending;
    int failing_inits;
    int privileged;
    int lost[ND_MAX_GPUS];
    int nvlink_return[ND_MAX_GPUS][ND_MAX_NVLINKS];
    int field_type[ND_FIELD_TYPES];
    nd_rule rules[ND_MAX_RULES];
    unsigned nrules;
    nd_proclist procs[ND_MAX_GPUS][1 + ND_MAX_MIG_SLOTS];
    double t0_mono, t0_real, offset;
    struct nd_event_set *sets;
    struct nd_gpm_sample *samples;
    unsigned long long init_calls, init_ok, shutdown_calls, event_sets_open, gpm_samples_open, calls,
        pcie_throughput_calls, gpm_sample_calls;
} g;

/* ---- helpers ------------------------------------------------------------------------------------------------ */

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double real_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* seconds of the double's clock since the last reset */
static double nd_t(void) { return mono_now() - g.t0_mono + g.offset; }

static double phase(int index) { return 0.7 * index; }

static double curve(nd_curve c, double ph, double t) {
    return c.base + c.amp * (0.5 + 0.5 * sin(TAU * t / c.period + ph));
}

/* the integral of curve() over [0, t] */
static double curve_integral(nd_curve c, double ph, double t) {
    double w = TAU / c.period;
    return c.base * t + c.amp * (0.5 * t - 0.5 / w * (cos(w * t + ph) - cos(ph)));
}

static unsigned long long round_ull(double x) { return x <= 0 ? 0ULL : (unsigned long long)llround(x); }

static int mig_mode(void) { return g.profile->mig_enabled && g.model->mig && g.model->mig_count > 0; }

static const nd_mig_entry *mig_entry(int slot) {
    if (!mig_mode() || slot < 0) return NULL;
    for (unsigned k = 0; k < g.model->mig_count; k++)
        if ((int)g.model->mig_layout[k].slot == slot) return &g.model->mig_layout[k];
    return NULL;
}

ND_GPM_HELPER static const nd_mig_entry *mig_entry_by_gi(long gi) {
    if (!mig_mode()) return NULL;
    for (unsigned k = 0; k < g.model->mig_count; k++)
        if ((long)g.model->mig_layout[k].gpu_instance == gi) return &g.model->mig_layout[k];
    return NULL;
}

static nd_epoch *new_epoch(unsigned id) {
    nd_epoch *e = calloc(1, sizeof *e);
    if (!e) abort();
    e->id = id;
    for (int i = 0; i < ND_MAX_GPUS; i++) {
        e->gpus[i] = (struct nd_device){ND_DEVICE_MAGIC, id, i, -1};
        for (int s = 0; s < ND_MAX_MIG_SLOTS; s++) e->migs[i][s] = (struct nd_device){ND_DEVICE_MAGIC, id, i, s};
    }
    e->next = g.epochs; /* epochs are never freed: an old handle stays safe to look at */
    g.epochs = e;
    return e;
}

static const struct nd_device *lookup_device(const void *p) {
    uintptr_t a = (uintptr_t)p;
    for (const nd_epoch *e = g.epochs; e; e = e->next) {
        uintptr_t lo = (uintptr_t)&e->gpus[0], hi = lo + sizeof e->gpus;
        if (a >= lo && a < hi && (a - lo) % sizeof(struct nd_device) == 0) return p;
        lo = (uintptr_t)&e->migs[0][0];
        hi = lo + sizeof e->migs;
        if (a >= lo && a < hi && (a - lo) % sizeof(struct nd_device) == 0) return p;
    }
    return NULL;
}

static struct nd_event_set *lookup_set(const void *p) {
    for (struct nd_event_set *s = g.sets; s; s = s->next)
        if ((const void *)s == p && s->magic == ND_SET_MAGIC) return s;
    return NULL;
}

ND_GPM_HELPER static struct nd_gpm_sample *lookup_sample(const void *p) {
    for (struct nd_gpm_sample *s = g.samples; s; s = s->next)
        if ((const void *)s == p && s->magic == ND_SAMPLE_MAGIC) return s;
    return NULL;
}

static void clear_procs(void) {
    for (int i = 0; i < ND_MAX_GPUS; i++)
        for (int s = 0; s <= ND_MAX_MIG_SLOTS; s++) {
            free(g.procs[i][s].pids);
            free(g.procs[i][s].used);
            g.procs[i][s] = (nd_proclist){0, 0, NULL, NULL};
        }
}

static void drop_sets_and_samples(void) {
    struct nd_event_set *s = g.sets;
    while (s) {
        struct nd_event_set *next = s->next;
        s->next = NULL;
        if (s->waiters > 0) {
            s->freed = 1; /* its last waiter frees it */
        } else {
            s->magic = 0;
            free(s);
        }
        s = next;
    }
    g.sets = NULL;
    struct nd_gpm_sample *m = g.samples;
    while (m) {
        struct nd_gpm_sample *next = m->next;
        m->magic = 0;
        free(m);
        m = next;
    }
    g.samples = NULL;
    pthread_cond_broadcast(&g_cond);
}

static const nd_profile *find_profile(const char *name) {
    if (!name) return NULL;
    for (unsigned k = 0; k < ND_PROFILE_COUNT; k++)
        if (strcmp(ND_PROFILES[k].name, name) == 0) return &ND_PROFILES[k];
    return NULL;
}

/* 0, -1 unknown profile, -2 profile of another driver generation, -3 GPU count out of range */
static int do_reset(const char *profile_name, unsigned gpus) {
    const nd_profile *p = find_profile(profile_name ? profile_name : ND_DEFAULT_PROFILE);
    if (!p) return -1;
    if (p->driver != ND_VARIANT_DRIVER) return -2;
    if (gpus < 1 || gpus > ND_MAX_GPUS) return -3;
    if (!g.epochs) g.cur = new_epoch(g.epoch);
    drop_sets_and_samples();
    clear_procs();
    g.configured = 1;
    g.misconfigured = 0;
    g.profile = p;
    g.model = &ND_MODELS[p->model];
    g.driver = &ND_DRIVERS[p->driver];
    g.gpus = gpus;
    g.pending_gpus = 0;
    g.refcount = 0;
    g.reload_pending = 0;
    g.failing_inits = 0;
    g.privileged = 0;
    memset(g.lost, 0, sizeof g.lost);
    memset(g.nvlink_return, 0, sizeof g.nvlink_return);
    for (unsigned k = 0; k < ND_FIELD_TYPES; k++) g.field_type[k] = -1;
    g.nrules = 0;
    g.t0_mono = mono_now();
    g.t0_real = real_now();
    g.offset = 0;
    g.init_calls = g.init_ok = g.shutdown_calls = g.event_sets_open = g.gpm_samples_open = g.calls = 0;
    g.pcie_throughput_calls = g.gpm_sample_calls = 0;
    return 0;
}

/* The first use before any nvml_double_reset: the profile from the environment. */
static void ensure_configured(void) {
    if (g.configured) return;
    const char *profile = getenv("NVML_DOUBLE_PROFILE");
    const char *gpus_env = getenv("NVML_DOUBLE_GPUS");
    if (profile && !*profile) profile = NULL;
    long gpus = 8;
    int bad_gpus = 0;
    if (gpus_env && *gpus_env) {
        char *end = NULL;
        gpus = strtol(gpus_env, &end, 10);
        bad_gpus = !end || *end || gpus < 1 || gpus > ND_MAX_GPUS;
    }
    int rc = bad_gpus ? -3 : do_reset(profile, (unsigned)gpus);
    if (rc != 0) {
        static const char *why[] = {"", "unknown profile", "a profile of another driver generation",
                                    "a GPU count out of 1..64"};
        fprintf(stderr, "nvml_double (%s): NVML_DOUBLE_PROFILE=%s NVML_DOUBLE_GPUS=%s: %s; nvmlInit will fail\n",
                ND_VARIANT_NAME, profile ? profile : "", gpus_env ? gpus_env : "", why[-rc]);
        do_reset(NULL, 8);
        g.misconfigured = 1;
    }
}

static int star_excluded(const char *fn) {
    return strcmp(fn, "nvmlErrorString") == 0 || strcmp(fn, "nvmlShutdown") == 0;
}

static void remove_rule(unsigned k) {
    g.rules[k] = g.rules[g.nrules - 1];
    g.nrules--;
}

/* The return code a fault rule injects into this call of `fn` on GPU `gpu` (-1: a device-less call), or 0. */
static int injected(const char *fn, int gpu) {
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned k = 0; k < g.nrules; k++) {
            nd_rule *r = &g.rules[k];
            if (pass == 0 ? strcmp(r->function, fn) != 0 : (strcmp(r->function, "*") != 0 || star_excluded(fn)))
                continue;
            if (r->gpu != -1 && r->gpu != gpu) continue;
            int rc = r->nvml_return;
            if (r->remaining > 0 && --r->remaining == 0) remove_rule(k);
            return rc;
        }
    }
    return 0;
}

static void lock_call(void) {
    pthread_mutex_lock(&g_mu);
    ensure_configured();
    g.calls++;
}

static int unlock_rc(int rc) {
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* The checks of a device-less call, with the lock held. */
static int check_lib(const char *fn) {
    if (g.refcount == 0) return NVML_ERROR_UNINITIALIZED;
    int rc = injected(fn, -1);
    if (rc) return rc;
    if (g.reload_pending) return NVML_ERROR_UNKNOWN;
    return NVML_SUCCESS;
}

enum { ALLOW_LOST = 1 };

/* The checks of a call with a device handle, with the lock held; *out is the device on success. */
static int check_dev(const char *fn, const void *handle, int flags, const struct nd_device **out) {
    if (g.refcount == 0) return NVML_ERROR_UNINITIALIZED;
    const struct nd_device *d = lookup_device(handle);
    if (!d || d->magic != ND_DEVICE_MAGIC || d->epoch != g.epoch) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->index < 0 || (unsigned)d->index >= g.gpus) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->slot >= 0 && !mig_entry(d->slot)) return NVML_ERROR_INVALID_ARGUMENT;
    int rc = injected(fn, d->index);
    if (rc) return rc;
    if (g.reload_pending) return NVML_ERROR_UNKNOWN;
    if (g.lost[d->index] && !(flags & ALLOW_LOST)) return NVML_ERROR_GPU_IS_LOST;
    *out = d;
    return NVML_SUCCESS;
}

#define ENTER_DEV(fn, handle, flags)                  \
    const struct nd_device *d = NULL;                 \
    lock_call();                                      \
    {                                                 \
        int rc_ = check_dev(fn, handle, flags, &d);   \
        if (rc_) return unlock_rc(rc_);               \
    }

#define ENTER_LIB(fn)                \
    lock_call();                     \
    {                                \
        int rc_ = check_lib(fn);     \
        if (rc_) return unlock_rc(rc_); \
    }

#define REQUIRE(cond, rc)                  \
    do {                                   \
        if (!(cond)) return unlock_rc(rc); \
    } while (0)

static int copy_string(char *dst, unsigned length, const char *src) {
    size_t n = strlen(src);
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if ((size_t)length < n + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, n + 1);
    return NVML_SUCCESS;
}

/* ---- the values: deterministic functions of the clock and the GPU index ------------------------------------ */

static double load(int i, double t) { return curve(C_LOAD, phase(i), t); }

static unsigned long long mem_total(void) { return g.model->memory_mib * MIB; }
static unsigned long long mem_reserved(void) { return g.model->reserved_mib * MIB; }

/* used memory, reserved excluded, in whole MiB; it changes once a second (of the double's clock) */
static unsigned long long mem_used(int i, double t) {
    unsigned long long usable_mib = g.model->memory_mib - g.model->reserved_mib;
    return (unsigned long long)floor(curve(C_MEMUSE, phase(i), floor(t)) * (double)usable_mib) * MIB;
}

static unsigned long long mig_total(const nd_mig_entry *m) { return m->memory_mib * MIB; }

static unsigned long long mig_used(int i, const nd_mig_entry *m, double t) {
    double ph = phase(i) + 1.3 * m->gpu_instance;
    return (unsigned long long)floor(curve(C_MIGUSE, ph, floor(t)) * (double)m->memory_mib) * MIB;
}

static unsigned temperature(int i, double t) {
    return (unsigned)lround(curve(C_TEMP, phase(i), t)) + 3u * (unsigned)(i % 3);
}

static double power_w(int i, double t) {
    const nd_model *m = g.model;
    return m->idle_power_w + 0.9 * (m->power_limit_w - m->idle_power_w) * load(i, t);
}

static unsigned long long energy_mj(int i, double t) {
    const nd_model *m = g.model;
    double joules = m->idle_power_w * ND_UPTIME_S + m->idle_power_w * t +
                    0.9 * (m->power_limit_w - m->idle_power_w) * curve_integral(C_LOAD, phase(i), t);
    return round_ull(1000.0 * joules) + 1000ULL * (unsigned long long)i;
}

static unsigned sm_clock(int i, double t) {
    return g.model->sm_max_mhz - 15u * (unsigned)lround(curve(C_CLOCK, phase(i), t));
}

static double pcie_bytes_per_s(void) { return g.model->pcie_gbps * 1e9; }

static unsigned long long pcie_counter(int i, int rx, double t) {
    nd_curve c = rx ? C_PCIE_RX : C_PCIE_TX;
    return 100000000000ULL * (unsigned long long)(i + 1) +
           round_ull(pcie_bytes_per_s() * curve_integral(c, phase(i), t));
}

static double link_phase(int i, unsigned link) { return phase(i) + 0.29 * link; }

/* KiB since the start, per link and direction */
static unsigned long long nvlink_kib(int i, unsigned link, int rx, double t) {
    nd_curve c = rx ? C_NVL_RX : C_NVL_TX;
    double bytes = g.model->nvlink_gbps_per_link * 1e9 * curve_integral(c, link_phase(i, link), t);
    return 100000000ULL * (unsigned long long)(i + 1) + round_ull(bytes / 1024.0);
}

/* ---- processes ---------------------------------------------------------------------------------------------- */

static unsigned long long default_gpu_used(int i, double t) { return mem_used(i, t); }

/* The processes of a list slot (0: the GPU, 1 + s: MIG slot s), explicit or default, appended to out. */
static unsigned append_procs(int i, int slot, double t, nd_proc *out, unsigned n) {
    const nd_proclist *l = &g.procs[i][slot + 1];
    unsigned gi = UNSET_ID, ci = UNSET_ID;
    if (slot >= 0) {
        gi = mig_entry(slot)->gpu_instance;
        ci = 0;
    }
    if (l->set) {
        for (unsigned k = 0; k < l->count; k++) out[n++] = (nd_proc){l->pids[k], l->used[k], gi, ci};
        return n;
    }
    unsigned self = (unsigned)getpid();
    if (slot >= 0) {
        out[n++] = (nd_proc){self, 1024ULL * MIB, gi, ci};
    } else {
        unsigned long long used = default_gpu_used(i, t);
        out[n++] = (nd_proc){self, used - 600ULL * MIB, gi, ci};
        out[n++] = (nd_proc){4000000u + (unsigned)i, 600ULL * MIB, gi, ci};
    }
    return n;
}

/* The compute processes of a device into a fresh array (*n entries), or an NVML error. */
static int compute_procs(const struct nd_device *d, double t, nd_proc **out, unsigned *n) {
    unsigned cap = (ND_MAX_PROCS + 2) * (ND_MAX_MIG_SLOTS + 1);
    nd_proc *p = malloc(cap * sizeof *p);
    if (!p) return NVML_ERROR_UNKNOWN;
    unsigned k = 0;
    if (d->slot >= 0) {
        k = append_procs(d->index, d->slot, t, p, 0);
    } else if (mig_mode()) {
        if (!g.privileged) {
            free(p);
            return NVML_ERROR_NO_PERMISSION;
        }
        if (g.procs[d->index][0].set) {
            k = append_procs(d->index, -1, t, p, 0);
        } else {
            for (unsigned e = 0; e < g.model->mig_count; e++)
                k = append_procs(d->index, (int)g.model->mig_layout[e].slot, t, p, k);
        }
    } else {
        k = append_procs(d->index, -1, t, p, 0);
    }
    *out = p;
    *n = k;
    return NVML_SUCCESS;
}

/* The two-call pattern of the process queries: version 1 writes nvmlProcessInfo_t v1, 2 and 3 the v2 struct. */
static int running_procs(const char *fn, nvmlDevice_t device, unsigned *infoCount, void *infos, int version,
                         int graphics) {
    ENTER_DEV(fn, device, 0);
    REQUIRE(infoCount, NVML_ERROR_INVALID_ARGUMENT);
    nd_proc *p = NULL;
    unsigned n = 0;
    if (!graphics) {
        int rc = compute_procs(d, nd_t(), &p, &n);
        if (rc) return unlock_rc(rc);
    }
    int rc = NVML_SUCCESS;
    if (n > 0 && (*infoCount < n || !infos)) {
        rc = NVML_ERROR_INSUFFICIENT_SIZE;
    } else if (version == 1) {
        nvmlProcessInfo_v1_t *v = infos;
        for (unsigned k = 0; k < n; k++) v[k] = (nvmlProcessInfo_v1_t){p[k].pid, p[k].used};
    } else {
        nvmlProcessInfo_v2_t *v = infos;
        for (unsigned k = 0; k < n; k++)
            v[k] = (nvmlProcessInfo_v2_t){p[k].pid, p[k].used, p[k].gpu_instance, p[k].compute_instance};
    }
    *infoCount = n;
    free(p);
    return unlock_rc(rc);
}

/* ---- library ------------------------------------------------------------------------------------------------- */

static int do_init(const char *fn) {
    lock_call();
    g.init_calls++;
    int rc = injected(fn, -1);
    if (rc) return unlock_rc(rc);
    if (g.misconfigured) return unlock_rc(NVML_ERROR_UNKNOWN);
    if (g.failing_inits > 0) {
        g.failing_inits--;
        return unlock_rc(NVML_ERROR_DRIVER_NOT_LOADED);
    }
    if (g.reload_pending) {
        g.reload_pending = 0;
        g.epoch++;
        g.cur = new_epoch(g.epoch);
    }
    if (g.pending_gpus) {
        g.gpus = g.pending_gpus;
        g.pending_gpus = 0;
    }
    g.refcount++;
    g.init_ok++;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    return do_init("nvmlInitWithFlags");
}

ND_API int nvmlInit_v2(void) { return do_init("nvmlInit_v2"); }

ND_API int nvmlShutdown(void) {
    lock_call();
    g.shutdown_calls++;
    int rc = injected("nvmlShutdown", -1);
    if (rc) return unlock_rc(rc);
    if (g.refcount == 0) return unlock_rc(NVML_ERROR_UNINITIALIZED);
    g.refcount--;
    return unlock_rc(NVML_SUCCESS);
}

ND_API const char *nvmlErrorString(int result) {
    pthread_mutex_lock(&g_mu);
    g.calls++;
    pthread_mutex_unlock(&g_mu);
    switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires reset";
    case 17: return "GPU access blocked by the operating system";
    case 18: return "Driver/library version mismatch";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 22: return "vGPU operation not available while ECC is enabled";
    case 23: return "Insufficient resources";
    case 24: return "Frequency not supported";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not Ready";
    case 28: return "GPU not found";
    case 29: return "Invalid state";
    default: return "Unknown Error";
    }
}

/* ---- system ------------------------------------------------------------------------------------------------- */

ND_API int nvmlSystemGetDriverVersion(char *version, unsigned length) {
    ENTER_LIB("nvmlSystemGetDriverVersion");
    return unlock_rc(copy_string(version, length, g.driver->version));
}

static int cuda_version(const char *fn, int *v) {
    ENTER_LIB(fn);
    REQUIRE(v, NVML_ERROR_INVALID_ARGUMENT);
    *v = g.driver->cuda;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion) {
    return cuda_version("nvmlSystemGetCudaDriverVersion", cudaDriverVersion);
}

ND_API int nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    return cuda_version("nvmlSystemGetCudaDriverVersion_v2", cudaDriverVersion);
}

/* ---- devices: enumeration and identity ------------------------------------------------------------------------ */

ND_API int nvmlDeviceGetCount_v2(unsigned *deviceCount) {
    ENTER_LIB("nvmlDeviceGetCount_v2");
    REQUIRE(deviceCount, NVML_ERROR_INVALID_ARGUMENT);
    *deviceCount = g.gpus;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    lock_call();
    if (g.refcount == 0) return unlock_rc(NVML_ERROR_UNINITIALIZED);
    int rc = injected("nvmlDeviceGetHandleByIndex_v2", index < g.gpus ? (int)index : -1);
    if (rc) return unlock_rc(rc);
    if (g.reload_pending) return unlock_rc(NVML_ERROR_UNKNOWN);
    REQUIRE(device && index < g.gpus, NVML_ERROR_INVALID_ARGUMENT);
    *device = &g.cur->gpus[index];
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned length) {
    ENTER_DEV("nvmlDeviceGetUUID", device, 0);
    char buf[96];
    if (d->slot >= 0)
        snprintf(buf, sizeof buf, "MIG-4e564d4c-%04x-4000-8000-%012x", (unsigned)d->index, (unsigned)d->slot + 1u);
    else
        snprintf(buf, sizeof buf, "GPU-4e564d4c-%04x-4000-8000-%012x", (unsigned)d->index, 0x5e7a1c2bu);
    return unlock_rc(copy_string(uuid, length, buf));
}

ND_API int nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned length) {
    ENTER_DEV("nvmlDeviceGetName", device, 0);
    char buf[160];
    if (d->slot >= 0)
        snprintf(buf, sizeof buf, "%s MIG %s", g.model->name, mig_entry(d->slot)->profile);
    else
        snprintf(buf, sizeof buf, "%s", g.model->name);
    return unlock_rc(copy_string(name, length, buf));
}

static const unsigned PCI_BUSES[8] = {0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB};

ND_API int nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    ENTER_DEV("nvmlDeviceGetPciInfo_v3", device, 0);
    REQUIRE(pci, NVML_ERROR_INVALID_ARGUMENT);
    memset(pci, 0, sizeof *pci);
    pci->domain = (unsigned)d->index / 8u;
    pci->bus = PCI_BUSES[d->index % 8];
    pci->device = 0;
    pci->pciDeviceId = g.model->pci_device_id;
    pci->pciSubSystemId = (g.model->pci_device_id & 0xFFFF0000u) | 0x10DEu;
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
    return unlock_rc(NVML_SUCCESS);
}

/* ---- devices: what a GPU reports ------------------------------------------------------------------------------ */

#define WHOLE_GPU() REQUIRE(d->slot < 0, NVML_ERROR_NOT_SUPPORTED)

ND_API int nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    ENTER_DEV("nvmlDeviceGetUtilizationRates", device, 0);
    REQUIRE(utilization, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(d->slot < 0 && !mig_mode(), NVML_ERROR_NOT_SUPPORTED);
    double l = load(d->index, nd_t());
    utilization->gpu = (unsigned)lround(100.0 * l);
    utilization->memory = (unsigned)lround(55.0 * l);
    return unlock_rc(NVML_SUCCESS);
}

/* total, reserved, free and used (reserved excluded) of a GPU or MIG device */
static void memory_of(const struct nd_device *d, unsigned long long *total, unsigned long long *reserved,
                      unsigned long long *free_, unsigned long long *used) {
    double t = nd_t();
    if (d->slot >= 0) {
        const nd_mig_entry *m = mig_entry(d->slot);
        *total = mig_total(m);
        *reserved = 0;
        *used = mig_used(d->index, m, t);
    } else {
        *total = mem_total();
        *reserved = mem_reserved();
        *used = mem_used(d->index, t);
    }
    *free_ = *total - *reserved - *used;
}

ND_API int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    ENTER_DEV("nvmlDeviceGetMemoryInfo", device, 0);
    REQUIRE(memory, NVML_ERROR_INVALID_ARGUMENT);
    unsigned long long total, reserved, free_, used;
    memory_of(d, &total, &reserved, &free_, &used);
    memory->total = total;
    memory->free = free_;
    memory->used = total - free_; /* v1: the reserved memory counts as used */
    return unlock_rc(NVML_SUCCESS);
}

#if !defined(ND_OMIT_nvmlDeviceGetMemoryInfo_v2)
ND_API int nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    ENTER_DEV("nvmlDeviceGetMemoryInfo_v2", device, 0);
    REQUIRE(g.driver->memory_v2, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(memory, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(memory->version == NVML_MEMORY_V2, NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    memory_of(d, &memory->total, &memory->reserved, &memory->free, &memory->used);
    return unlock_rc(NVML_SUCCESS);
}
#endif

ND_API int nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned *temp) {
    ENTER_DEV("nvmlDeviceGetTemperature", device, 0);
    WHOLE_GPU();
    REQUIRE(temp && sensorType == 0, NVML_ERROR_INVALID_ARGUMENT);
    *temp = temperature(d->index, nd_t());
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, int thresholdType, unsigned *temp) {
    ENTER_DEV("nvmlDeviceGetTemperatureThreshold", device, 0);
    WHOLE_GPU();
    REQUIRE(temp, NVML_ERROR_INVALID_ARGUMENT);
    unsigned value = 0;
    switch (thresholdType) {
    case 0: value = g.model->temp_shutdown_c; break;
    case 1: value = g.model->temp_slowdown_c; break;
    case 2: value = g.model->temp_mem_max_c; break;
    case 3: value = g.model->temp_gpu_max_c; break;
    default: value = 0;
    }
    REQUIRE(value != 0, NVML_ERROR_NOT_SUPPORTED);
    *temp = value;
    return unlock_rc(NVML_SUCCESS);
}

/* one field's value and its NVML value type, or a per-field error */
static int field_value(const struct nd_device *d, unsigned field, unsigned scope, double t, unsigned *type,
                       unsigned long long *value) {
    const nd_model *m = g.model;
    int i = d->index;
    switch (field) {
    case FI_MEMORY_TEMP: *type = NVML_VALUE_TYPE_UNSIGNED_INT; break;
    case FI_NVLINK_LINK_COUNT: *type = NVML_VALUE_TYPE_UNSIGNED_INT; break;
    case FI_POWER_INSTANT: *type = NVML_VALUE_TYPE_UNSIGNED_INT; break;
    case FI_PCIE_REPLAY_COUNTER: *type = NVML_VALUE_TYPE_UNSIGNED_INT; break;
    default: *type = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
    }
    if (d->slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    switch (field) {
    case FI_MEMORY_TEMP:
        if (!m->hbm) return NVML_ERROR_NOT_SUPPORTED;
        *value = temperature(i, t) + 3u; /* HBM runs a little warmer than the GPU */
        return NVML_SUCCESS;
    case FI_NVLINK_LINK_COUNT:
        if (!m->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        *value = m->nvlink_links;
        return NVML_SUCCESS;
    case FI_NVLINK_THROUGHPUT_DATA_TX:
    case FI_NVLINK_THROUGHPUT_DATA_RX:
        if (!m->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        if (scope >= m->nvlink_links) return NVML_ERROR_INVALID_ARGUMENT;
        if (g.nvlink_return[i][scope]) return g.nvlink_return[i][scope];
        *value = nvlink_kib(i, scope, field == FI_NVLINK_THROUGHPUT_DATA_RX, t);
        return NVML_SUCCESS;
    case FI_NVLINK_CRC_FLIT_TOTAL:
    case FI_NVLINK_CRC_DATA_TOTAL:
    case FI_NVLINK_REPLAY_TOTAL:
    case FI_NVLINK_RECOVERY_TOTAL:
        if (!m->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        *value = field == FI_NVLINK_REPLAY_TOTAL ? 2ULL + (unsigned long long)(t / 300.0)
                 : field == FI_NVLINK_RECOVERY_TOTAL ? 1ULL
                                                     : 0ULL;
        return NVML_SUCCESS;
    case FI_POWER_INSTANT: {
        double w = power_w(i, t) * (1.0 + 0.02 * sin(TAU * t / 1.7 + i));
        if (w > m->power_limit_w) w = m->power_limit_w;
        *value = round_ull(1000.0 * w);
        return NVML_SUCCESS;
    }
    case FI_PCIE_COUNT_TX_BYTES:
    case FI_PCIE_COUNT_RX_BYTES:
        if (!g.driver->pcie_byte_counters) return NVML_ERROR_NOT_SUPPORTED;
        *value = pcie_counter(i, field == FI_PCIE_COUNT_RX_BYTES, t);
        return NVML_SUCCESS;
    case FI_PCIE_REPLAY_COUNTER:
        *value = 0;
        return NVML_SUCCESS;
    default:
        return NVML_ERROR_NOT_SUPPORTED;
    }
}

static void write_value(nvmlValue_t *v, unsigned type, unsigned long long x) {
    switch (type) {
    case NVML_VALUE_TYPE_DOUBLE: v->dVal = (double)x; break;
    case NVML_VALUE_TYPE_UNSIGNED_INT: v->uiVal = (unsigned)x; break;
    case NVML_VALUE_TYPE_UNSIGNED_LONG: v->ulVal = (unsigned long)x; break;
    case NVML_VALUE_TYPE_SIGNED_LONG_LONG: v->sllVal = (long long)x; break;
    case NVML_VALUE_TYPE_SIGNED_INT: v->siVal = (int)x; break;
    case NVML_VALUE_TYPE_UNSIGNED_SHORT: v->usVal = (unsigned short)x; break;
    default: v->ullVal = x;
    }
}

ND_API int nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values) {
    ENTER_DEV("nvmlDeviceGetFieldValues", device, ALLOW_LOST);
    REQUIRE(values && valuesCount > 0, NVML_ERROR_INVALID_ARGUMENT);
    double t = nd_t();
    int64_t now_us = (int64_t)(real_now() * 1e6);
    for (int k = 0; k < valuesCount; k++) {
        nvmlFieldValue_t *f = &values[k];
        memset(&f->value, 0xAB, sizeof f->value); /* a reader of the wrong member reads garbage */
        f->timestamp = now_us;
        f->latencyUsec = 3;
        unsigned type = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
        unsigned long long x = 0;
        int rc = field_value(d, f->fieldId, f->scopeId, t, &type, &x);
        if (g.lost[d->index]) rc = NVML_ERROR_GPU_IS_LOST;
        if (f->fieldId < ND_FIELD_TYPES && g.field_type[f->fieldId] >= 0) type = (unsigned)g.field_type[f->fieldId];
        f->valueType = type;
        f->nvmlReturn = (unsigned)rc;
        if (rc == NVML_SUCCESS) write_value(&f->value, type, x);
    }
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned *power) {
    ENTER_DEV("nvmlDeviceGetPowerUsage", device, 0);
    WHOLE_GPU();
    REQUIRE(power, NVML_ERROR_INVALID_ARGUMENT);
    *power = (unsigned)lround(1000.0 * power_w(d->index, nd_t()));
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned *limit) {
    ENTER_DEV("nvmlDeviceGetEnforcedPowerLimit", device, 0);
    WHOLE_GPU();
    REQUIRE(limit, NVML_ERROR_INVALID_ARGUMENT);
    *limit = (unsigned)lround(1000.0 * g.model->power_limit_w);
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    ENTER_DEV("nvmlDeviceGetTotalEnergyConsumption", device, 0);
    WHOLE_GPU();
    REQUIRE(g.model->energy_counter, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(energy, NVML_ERROR_INVALID_ARGUMENT);
    *energy = energy_mj(d->index, nd_t());
    return unlock_rc(NVML_SUCCESS);
}

static int clock_of(const char *fn, nvmlDevice_t device, int type, unsigned *clock, int max) {
    ENTER_DEV(fn, device, 0);
    WHOLE_GPU();
    REQUIRE(clock && type >= 0 && type <= 3, NVML_ERROR_INVALID_ARGUMENT);
    unsigned sm = max ? g.model->sm_max_mhz : sm_clock(d->index, nd_t());
    switch (type) {
    case 0: /* graphics */
    case 1: *clock = sm; break;
    case 2: *clock = g.model->mem_max_mhz; break;
    default: *clock = (unsigned)lround(0.88 * sm); /* video */
    }
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned *clock) {
    return clock_of("nvmlDeviceGetClockInfo", device, type, clock, 0);
}

ND_API int nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned *clock) {
    return clock_of("nvmlDeviceGetMaxClockInfo", device, type, clock, 1);
}

static int clock_reasons(const char *fn, nvmlDevice_t device, unsigned long long *reasons, int event_api) {
    ENTER_DEV(fn, device, 0);
    WHOLE_GPU();
    REQUIRE(!event_api || g.driver->clock_event_reasons, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(reasons, NVML_ERROR_INVALID_ARGUMENT);
    *reasons = load(d->index, nd_t()) > 0.94 ? 0x4ULL : 0ULL; /* SW power cap at the peaks of the load */
    return unlock_rc(NVML_SUCCESS);
}

#if !defined(ND_OMIT_nvmlDeviceGetCurrentClocksEventReasons)
ND_API int nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *clocksEventReasons) {
    return clock_reasons("nvmlDeviceGetCurrentClocksEventReasons", device, clocksEventReasons, 1);
}
#endif

ND_API int nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    return clock_reasons("nvmlDeviceGetCurrentClocksThrottleReasons", device, reasons, 0);
}

ND_API int nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned *speed) {
    ENTER_DEV("nvmlDeviceGetFanSpeed", device, 0);
    WHOLE_GPU();
    REQUIRE(g.model->fan, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(speed, NVML_ERROR_INVALID_ARGUMENT);
    *speed = (unsigned)lround(curve(C_FAN, phase(d->index), nd_t()));
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetPerformanceState(nvmlDevice_t device, unsigned *pState) {
    ENTER_DEV("nvmlDeviceGetPerformanceState", device, 0);
    WHOLE_GPU();
    REQUIRE(pState, NVML_ERROR_INVALID_ARGUMENT);
    *pState = 0;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int errorType, int counterType,
                                       unsigned long long *eccCounts) {
    ENTER_DEV("nvmlDeviceGetTotalEccErrors", device, 0);
    WHOLE_GPU();
    REQUIRE(eccCounts && (errorType == 0 || errorType == 1) && (counterType == 0 || counterType == 1),
            NVML_ERROR_INVALID_ARGUMENT);
    /* corrected: 3 since the last driver load (volatile), 12 in the GPU's lifetime (aggregate); uncorrected: 0 */
    *eccCounts = errorType == 1 ? 0ULL : counterType == 1 ? 12ULL : 3ULL;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned *corrRows, unsigned *uncRows,
                                     unsigned *isPending, unsigned *failureOccurred) {
    ENTER_DEV("nvmlDeviceGetRemappedRows", device, 0);
    WHOLE_GPU();
    REQUIRE(g.model->row_remapping, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(corrRows && uncRows && isPending && failureOccurred, NVML_ERROR_INVALID_ARGUMENT);
    *corrRows = 1;
    *uncRows = 0;
    *isPending = 0;
    *failureOccurred = 0;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetRetiredPages(nvmlDevice_t device, int cause, unsigned *pageCount,
                                     unsigned long long *addresses) {
    ENTER_DEV("nvmlDeviceGetRetiredPages", device, 0);
    WHOLE_GPU();
    REQUIRE(!g.model->row_remapping, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(pageCount && (cause == 0 || cause == 1), NVML_ERROR_INVALID_ARGUMENT);
    /* two pages retired for multiple single-bit errors, one for a double-bit error */
    unsigned n = cause == 0 ? 2u : 1u;
    if (*pageCount < n || !addresses) {
        *pageCount = n;
        return unlock_rc(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    for (unsigned k = 0; k < n; k++)
        addresses[k] = 0x1f0000000ULL + 0x1000000ULL * (unsigned long long)d->index +
                       0x10000ULL * (unsigned long long)cause + 0x1000ULL * k;
    *pageCount = n;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, unsigned *isPending) {
    ENTER_DEV("nvmlDeviceGetRetiredPagesPendingStatus", device, 0);
    WHOLE_GPU();
    REQUIRE(!g.model->row_remapping, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(isPending, NVML_ERROR_INVALID_ARGUMENT);
    *isPending = 0;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetPcieThroughput(nvmlDevice_t device, int counter, unsigned *value) {
    ENTER_DEV("nvmlDeviceGetPcieThroughput", device, 0);
    WHOLE_GPU();
    REQUIRE(value && (counter == 0 || counter == 1), NVML_ERROR_INVALID_ARGUMENT);
    g.pcie_throughput_calls++;
    int index = d->index;
    pthread_mutex_unlock(&g_mu);
    struct timespec window = {0, 20 * 1000 * 1000}; /* NVML samples over 20 ms */
    while (nanosleep(&window, &window) != 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&g_mu);
    nd_curve c = counter == 1 ? C_PCIE_RX : C_PCIE_TX;
    *value = (unsigned)lround(pcie_bytes_per_s() * curve(c, phase(index), nd_t()) / 1024.0); /* KB/s */
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned *value) {
    ENTER_DEV("nvmlDeviceGetPcieReplayCounter", device, 0);
    WHOLE_GPU();
    REQUIRE(value, NVML_ERROR_INVALID_ARGUMENT);
    *value = 0;
    return unlock_rc(NVML_SUCCESS);
}

static int codec_utilization(const char *fn, nvmlDevice_t device, unsigned *utilization, unsigned *period) {
    ENTER_DEV(fn, device, 0);
    WHOLE_GPU();
    REQUIRE(g.model->encoders, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(utilization && period, NVML_ERROR_INVALID_ARGUMENT);
    *utilization = 0; /* an LLM server encodes and decodes no video */
    *period = 167000;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned *utilization, unsigned *samplingPeriodUs) {
    return codec_utilization("nvmlDeviceGetEncoderUtilization", device, utilization, samplingPeriodUs);
}

ND_API int nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned *utilization, unsigned *samplingPeriodUs) {
    return codec_utilization("nvmlDeviceGetDecoderUtilization", device, utilization, samplingPeriodUs);
}

ND_API int nvmlDeviceGetViolationStatus(nvmlDevice_t device, int perfPolicyType, nvmlViolationTime_t *violTime) {
    ENTER_DEV("nvmlDeviceGetViolationStatus", device, 0);
    WHOLE_GPU();
    REQUIRE(violTime, NVML_ERROR_INVALID_ARGUMENT);
    /* the share of the time each policy held the clocks down */
    static const double share[12] = {0.05, 0.002, 0.001, 0.001, 0.003, 0.0005, 0, 0, 0, 0, 0.0575, 0.02};
    REQUIRE(perfPolicyType >= 0 && perfPolicyType < 12 && share[perfPolicyType] > 0, NVML_ERROR_INVALID_ARGUMENT);
    double t = nd_t();
    violTime->referenceTime = round_ull((g.t0_real + t) * 1e6);
    violTime->violationTime = round_ull(share[perfPolicyType] * (ND_UPTIME_S + t) * 1e9);
    return unlock_rc(NVML_SUCCESS);
}

/* ---- processes ---------------------------------------------------------------------------------------------- */

#if !defined(ND_OMIT_nvmlDeviceGetComputeRunningProcesses_v3)
ND_API int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned *infoCount,
                                                   nvmlProcessInfo_v2_t *infos) {
    return running_procs("nvmlDeviceGetComputeRunningProcesses_v3", device, infoCount, infos, 3, 0);
}
#endif

#if !defined(ND_OMIT_nvmlDeviceGetGraphicsRunningProcesses_v3)
ND_API int nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned *infoCount,
                                                    nvmlProcessInfo_v2_t *infos) {
    return running_procs("nvmlDeviceGetGraphicsRunningProcesses_v3", device, infoCount, infos, 3, 1);
}
#endif

ND_API int nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned *infoCount,
                                                   nvmlProcessInfo_v2_t *infos) {
    return running_procs("nvmlDeviceGetComputeRunningProcesses_v2", device, infoCount, infos, 2, 0);
}

ND_API int nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device, unsigned *infoCount,
                                                    nvmlProcessInfo_v2_t *infos) {
    return running_procs("nvmlDeviceGetGraphicsRunningProcesses_v2", device, infoCount, infos, 2, 1);
}

ND_API int nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned *infoCount,
                                                nvmlProcessInfo_v1_t *infos) {
    return running_procs("nvmlDeviceGetComputeRunningProcesses", device, infoCount, infos, 1, 0);
}

ND_API int nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t device, unsigned *infoCount,
                                                 nvmlProcessInfo_v1_t *infos) {
    return running_procs("nvmlDeviceGetGraphicsRunningProcesses", device, infoCount, infos, 1, 1);
}

/* ---- MIG ------------------------------------------------------------------------------------------------------ */

ND_API int nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned *currentMode, unsigned *pendingMode) {
    ENTER_DEV("nvmlDeviceGetMigMode", device, 0);
    WHOLE_GPU();
    REQUIRE(g.model->mig, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(currentMode && pendingMode, NVML_ERROR_INVALID_ARGUMENT);
    *currentMode = *pendingMode = (unsigned)mig_mode();
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned *count) {
    ENTER_DEV("nvmlDeviceGetMaxMigDeviceCount", device, 0);
    REQUIRE(d->slot < 0, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(count, NVML_ERROR_INVALID_ARGUMENT);
    *count = mig_mode() ? g.model->max_mig_devices : 0u; /* zero when MIG is not supported or not enabled */
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned index, nvmlDevice_t *migDevice) {
    ENTER_DEV("nvmlDeviceGetMigDeviceHandleByIndex", device, 0);
    REQUIRE(d->slot < 0 && migDevice, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(g.model->mig, NVML_ERROR_NOT_SUPPORTED);
    REQUIRE(index < g.model->max_mig_devices && index < ND_MAX_MIG_SLOTS, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(mig_entry((int)index), NVML_ERROR_NOT_FOUND);
    *migDevice = &g.cur->migs[d->index][index];
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device) {
    ENTER_DEV("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice, 0);
    REQUIRE(d->slot >= 0 && device, NVML_ERROR_INVALID_ARGUMENT);
    *device = &g.cur->gpus[d->index];
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned *isMigDevice) {
    ENTER_DEV("nvmlDeviceIsMigDeviceHandle", device, 0);
    REQUIRE(isMigDevice, NVML_ERROR_INVALID_ARGUMENT);
    *isMigDevice = d->slot >= 0;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned *id) {
    ENTER_DEV("nvmlDeviceGetGpuInstanceId", device, 0);
    REQUIRE(id, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(d->slot >= 0, NVML_ERROR_NOT_SUPPORTED);
    *id = mig_entry(d->slot)->gpu_instance;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned *id) {
    ENTER_DEV("nvmlDeviceGetComputeInstanceId", device, 0);
    REQUIRE(id, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(d->slot >= 0, NVML_ERROR_NOT_SUPPORTED);
    *id = 0;
    return unlock_rc(NVML_SUCCESS);
}

/* ---- events --------------------------------------------------------------------------------------------------- */

ND_API int nvmlEventSetCreate(nvmlEventSet_t *set) {
    ENTER_LIB("nvmlEventSetCreate");
    REQUIRE(set, NVML_ERROR_INVALID_ARGUMENT);
    struct nd_event_set *s = calloc(1, sizeof *s);
    REQUIRE(s, NVML_ERROR_UNKNOWN);
    s->magic = ND_SET_MAGIC;
    s->next = g.sets;
    g.sets = s;
    g.event_sets_open++;
    *set = s;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set) {
    ENTER_DEV("nvmlDeviceRegisterEvents", device, 0);
    REQUIRE(d->slot < 0, NVML_ERROR_NOT_SUPPORTED);
    struct nd_event_set *s = lookup_set(set);
    REQUIRE(s, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE((eventTypes & ~EVENT_SUPPORTED) == 0, NVML_ERROR_NOT_SUPPORTED);
    if (s->reg_epoch[d->index] != g.epoch) s->mask[d->index] = 0;
    s->mask[d->index] |= eventTypes;
    s->reg_epoch[d->index] = g.epoch;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeoutms) {
    ENTER_LIB("nvmlEventSetWait_v2");
    struct nd_event_set *s = lookup_set(set);
    REQUIRE(s && data, NVML_ERROR_INVALID_ARGUMENT);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(timeoutms / 1000u);
    deadline.tv_nsec += (long)(timeoutms % 1000u) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    s->waiters++;
    while (s->count == 0 && !s->freed) {
        if (pthread_cond_timedwait(&g_cond, &g_mu, &deadline) == ETIMEDOUT) break; /* unlocked while waiting */
    }
    s->waiters--;
    if (s->freed) {
        if (s->waiters == 0) {
            s->magic = 0;
            free(s);
        }
        return unlock_rc(NVML_ERROR_INVALID_ARGUMENT);
    }
    if (s->count == 0) return unlock_rc(NVML_ERROR_TIMEOUT);
    nd_xid e = s->queue[s->head];
    s->head = (s->head + 1) % ND_EVENT_QUEUE;
    s->count--;
    if (e.lose_gpu) g.lost[e.gpu] = 1; /* XID 79: gone by the time the event is read */
    memset(data, 0, sizeof *data);
    data->device = &g.cur->gpus[e.gpu];
    data->eventType = EVENT_XID_CRITICAL;
    data->eventData = e.xid;
    data->gpuInstanceId = e.gpu_instance;
    data->computeInstanceId = e.compute_instance;
    return unlock_rc(NVML_SUCCESS);
}

ND_API int nvmlEventSetFree(nvmlEventSet_t set) {
    lock_call();
    if (g.refcount == 0) return unlock_rc(NVML_ERROR_UNINITIALIZED);
    int rc = injected("nvmlEventSetFree", -1);
    if (rc) return unlock_rc(rc);
    struct nd_event_set *s = lookup_set(set);
    REQUIRE(s, NVML_ERROR_INVALID_ARGUMENT);
    for (struct nd_event_set **p = &g.sets; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    if (s->waiters > 0) {
        s->freed = 1;
        pthread_cond_broadcast(&g_cond);
    } else {
        s->magic = 0;
        free(s);
    }
    if (g.event_sets_open) g.event_sets_open--;
    return unlock_rc(NVML_SUCCESS);
}

/* ---- GPM (current drivers, Hopper and newer) ------------------------------------------------------------------- */

ND_GPM_HELPER static int gpm_supported(void) { return g.model->gpm && g.driver->gpm; }

ND_GPM_HELPER static double gpm_phase(int index, long gpu_instance) {
    return phase(index) + (gpu_instance >= 0 ? 1.3 * (double)gpu_instance : 0.0);
}

#if !defined(ND_OMIT_nvmlGpmSampleGet) || !defined(ND_OMIT_nvmlGpmMigSampleGet)
static void fill_sample(struct nd_gpm_sample *s, int index, long gpu_instance) {
    double t = nd_t(), ph = gpm_phase(index, gpu_instance);
    s->filled = 1;
    s->index = index;
    s->gpu_instance = gpu_instance;
    s->epoch = g.epoch;
    s->t = t;
    for (unsigned k = 0; k < ND_GPM_METRIC_COUNT; k++) s->integral[k] = curve_integral(ND_GPM_METRICS[k].curve, ph, t);
    g.gpm_sample_calls++;
}
#endif

#if !defined(ND_OMIT_nvmlGpmQueryDeviceSupport)
ND_API int nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t *gpmSupport) {
    ENTER_DEV("nvmlGpmQueryDeviceSupport", device, 0);
    REQUIRE(gpmSupport, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(gpmSupport->version == GPM_SUPPORT_VERSION, NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    gpmSupport->isSupportedDevice = (unsigned)gpm_supported();
    return unlock_rc(NVML_SUCCESS);
}
#endif

#if !defined(ND_OMIT_nvmlGpmSampleAlloc)
ND_API int nvmlGpmSampleAlloc(nvmlGpmSample_t *gpmSample) {
    ENTER_LIB("nvmlGpmSampleAlloc");
    REQUIRE(gpmSample, NVML_ERROR_INVALID_ARGUMENT);
    struct nd_gpm_sample *s = calloc(1, sizeof *s);
    REQUIRE(s, NVML_ERROR_UNKNOWN);
    s->magic = ND_SAMPLE_MAGIC;
    s->next = g.samples;
    g.samples = s;
    g.gpm_samples_open++;
    *gpmSample = s;
    return unlock_rc(NVML_SUCCESS);
}
#endif

#if !defined(ND_OMIT_nvmlGpmSampleFree)
ND_API int nvmlGpmSampleFree(nvmlGpmSample_t gpmSample) {
    lock_call();
    if (g.refcount == 0) return unlock_rc(NVML_ERROR_UNINITIALIZED);
    int rc = injected("nvmlGpmSampleFree", -1);
    if (rc) return unlock_rc(rc);
    struct nd_gpm_sample *s = lookup_sample(gpmSample);
    REQUIRE(s, NVML_ERROR_INVALID_ARGUMENT);
    for (struct nd_gpm_sample **p = &g.samples; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    s->magic = 0;
    free(s);
    if (g.gpm_samples_open) g.gpm_samples_open--;
    return unlock_rc(NVML_SUCCESS);
}
#endif

#if !defined(ND_OMIT_nvmlGpmSampleGet)
ND_API int nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t gpmSample) {
    ENTER_DEV("nvmlGpmSampleGet", device, 0);
    WHOLE_GPU();
    REQUIRE(gpm_supported(), NVML_ERROR_NOT_SUPPORTED);
    struct nd_gpm_sample *s = lookup_sample(gpmSample);
    REQUIRE(s, NVML_ERROR_INVALID_ARGUMENT);
    fill_sample(s, d->index, -1);
    return unlock_rc(NVML_SUCCESS);
}
#endif

#if !defined(ND_OMIT_nvmlGpmMigSampleGet)
ND_API int nvmlGpmMigSampleGet(nvmlDevice_t device, unsigned gpuInstanceId, nvmlGpmSample_t gpmSample) {
    ENTER_DEV("nvmlGpmMigSampleGet", device, 0);
    WHOLE_GPU();
    REQUIRE(gpm_supported(), NVML_ERROR_NOT_SUPPORTED);
    struct nd_gpm_sample *s = lookup_sample(gpmSample);
    REQUIRE(s && mig_mode(), NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(mig_entry_by_gi((long)gpuInstanceId), NVML_ERROR_NOT_FOUND);
    fill_sample(s, d->index, (long)gpuInstanceId);
    return unlock_rc(NVML_SUCCESS);
}
#endif

#if !defined(ND_OMIT_nvmlGpmMetricsGet)
ND_API int nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *metricsGet) {
    lock_call();
    if (g.refcount == 0) return unlock_rc(NVML_ERROR_UNINITIALIZED);
    REQUIRE(metricsGet, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(metricsGet->version == GPM_METRICS_GET_VERSION, NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    const struct nd_gpm_sample *a = lookup_sample(metricsGet->sample1);
    const struct nd_gpm_sample *b = lookup_sample(metricsGet->sample2);
    int rc = injected("nvmlGpmMetricsGet", a && a->filled ? a->index : -1);
    if (rc) return unlock_rc(rc);
    if (g.reload_pending) return unlock_rc(NVML_ERROR_UNKNOWN);
    REQUIRE(a && b && a->filled && b->filled, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(a->index == b->index && a->gpu_instance == b->gpu_instance && a->epoch == b->epoch,
            NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(a->epoch == g.epoch && (unsigned)a->index < g.gpus, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(b->t > a->t, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(metricsGet->numMetrics <= GPM_METRIC_MAX, NVML_ERROR_INVALID_ARGUMENT);
    REQUIRE(!g.lost[a->index], NVML_ERROR_GPU_IS_LOST);
    double dt = b->t - a->t, ph = gpm_phase(a->index, a->gpu_instance), mid = 0.5 * (a->t + b->t);
    for (unsigned k = 0; k < metricsGet->numMetrics; k++) {
        nvmlGpmMetric_t *m = &metricsGet->metrics[k];
        m->value = 0;
        m->metricInfo = (nvmlGpmMetricInfo_t){NULL, NULL, NULL};
        m->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        for (unsigned j = 0; j < ND_GPM_METRIC_COUNT; j++) {
            const nd_gpm_metric *def = &ND_GPM_METRICS[j];
            if (def->id != m->metricId) continue;
            if (def->kind == GPM_MEDIA && !g.model->encoders) break;
            /* the average over the interval; at the midpoint for intervals too short to subtract */
            double avg = dt > 1e-6 ? (b->integral[j] - a->integral[j]) / dt : curve(def->curve, ph, mid);
            if (def->kind == GPM_PCIE_TX || def->kind == GPM_PCIE_RX) {
                avg = avg * pcie_bytes_per_s() / (double)MIB;
            } else {
                avg = avg < 0 ? 0 : avg > 100 ? 100 : avg;
            }
            m->value = avg;
            m->metricInfo = (nvmlGpmMetricInfo_t){def->short_name, def->long_name, def->unit};
            m->nvmlReturn = NVML_SUCCESS;
            break;
        }
    }
    return unlock_rc(NVML_SUCCESS);
}
#endif

/* ---- the control API ------------------------------------------------------------------------------------------ */

static void lock_control(void) {
    pthread_mutex_lock(&g_mu);
    ensure_configured();
}

ND_API int nvml_double_reset(const char *profile, unsigned gpus) {
    pthread_mutex_lock(&g_mu);
    int rc = do_reset(profile, gpus);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

ND_API void nvml_double_fail(const char *function, int gpu, int nvml_return, int times) {
    if (!function || strlen(function) >= sizeof g.rules[0].function) return;
    lock_control();
    for (unsigned k = 0; k < g.nrules; k++) {
        if (strcmp(g.rules[k].function, function) == 0 && g.rules[k].gpu == gpu) {
            remove_rule(k);
            break;
        }
    }
    if (times != 0 && nvml_return != 0 && g.nrules < ND_MAX_RULES) {
        nd_rule *r = &g.rules[g.nrules++];
        snprintf(r->function, sizeof r->function, "%s", function);
        r->gpu = gpu;
        r->nvml_return = nvml_return;
        r->remaining = times < 0 ? -1 : times;
    }
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_lose_gpu(int gpu) {
    lock_control();
    if (gpu >= 0 && gpu < ND_MAX_GPUS) g.lost[gpu] = 1;
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_restore_gpu(int gpu) {
    lock_control();
    if (gpu >= 0 && gpu < ND_MAX_GPUS) g.lost[gpu] = 0;
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_xid(int gpu, unsigned long long xid, unsigned gpu_instance, unsigned compute_instance,
                            int lose_gpu) {
    lock_control();
    if (gpu >= 0 && gpu < ND_MAX_GPUS) {
        int delivered = 0;
        for (struct nd_event_set *s = g.sets; s; s = s->next) {
            if (!(s->mask[gpu] & EVENT_XID_CRITICAL) || s->reg_epoch[gpu] != g.epoch) continue;
            if (s->count < ND_EVENT_QUEUE) {
                s->queue[(s->head + s->count) % ND_EVENT_QUEUE] =
                    (nd_xid){gpu, xid, gpu_instance, compute_instance, lose_gpu != 0};
                s->count++;
                delivered = 1;
            }
        }
        if (!delivered && lose_gpu) g.lost[gpu] = 1; /* nobody listens: the GPU falls off the bus right away */
        pthread_cond_broadcast(&g_cond);
    }
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_fail_nvlink(int gpu, int link, int nvml_return) {
    lock_control();
    if (gpu >= 0 && gpu < ND_MAX_GPUS && link >= 0 && link < ND_MAX_NVLINKS) g.nvlink_return[gpu][link] = nvml_return;
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_driver_reload(int failing_inits) {
    lock_control();
    g.reload_pending = 1;
    g.failing_inits = failing_inits > 0 ? failing_inits : 0;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_set_gpu_count(unsigned gpus) {
    lock_control();
    if (gpus >= 1 && gpus <= ND_MAX_GPUS) g.pending_gpus = gpus;
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_set_processes(int gpu, int mig_slot, unsigned count, const unsigned *pids,
                                      const unsigned long long *used_bytes) {
    lock_control();
    if (gpu >= 0 && gpu < ND_MAX_GPUS && mig_slot >= -1 && mig_slot < ND_MAX_MIG_SLOTS) {
        nd_proclist *l = &g.procs[gpu][mig_slot + 1];
        free(l->pids);
        free(l->used);
        *l = (nd_proclist){0, 0, NULL, NULL};
        if (count != UINT_MAX) { /* UINT_MAX: back to the default processes */
            if (count > ND_MAX_PROCS) count = ND_MAX_PROCS;
            l->set = 1;
            if (count > 0 && pids && used_bytes) {
                l->pids = malloc(count * sizeof *l->pids);
                l->used = malloc(count * sizeof *l->used);
                if (l->pids && l->used) {
                    memcpy(l->pids, pids, count * sizeof *l->pids);
                    memcpy(l->used, used_bytes, count * sizeof *l->used);
                    l->count = count;
                }
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_set_privileged(int privileged) {
    lock_control();
    g.privileged = privileged != 0;
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_set_field_type(unsigned field_id, int value_type) {
    lock_control();
    if (field_id < ND_FIELD_TYPES && value_type >= -1 && value_type < NVML_VALUE_TYPE_COUNT)
        g.field_type[field_id] = value_type; /* -1: the field's own type */
    pthread_mutex_unlock(&g_mu);
}

ND_API void nvml_double_advance(double seconds) {
    lock_control();
    if (seconds > 0) g.offset += seconds;
    pthread_mutex_unlock(&g_mu);
}

ND_API unsigned long long nvml_double_counter(const char *name) {
    unsigned long long v = ULLONG_MAX;
    if (!name) return v;
    lock_control();
    if (strcmp(name, "init_calls") == 0) v = g.init_calls;
    else if (strcmp(name, "init_ok") == 0) v = g.init_ok;
    else if (strcmp(name, "shutdown_calls") == 0) v = g.shutdown_calls;
    else if (strcmp(name, "refcount") == 0) v = g.refcount;
    else if (strcmp(name, "event_sets_open") == 0) v = g.event_sets_open;
    else if (strcmp(name, "gpm_samples_open") == 0) v = g.gpm_samples_open;
    else if (strcmp(name, "calls") == 0) v = g.calls;
    else if (strcmp(name, "pcie_throughput_calls") == 0) v = g.pcie_throughput_calls;
    else if (strcmp(name, "gpm_sample_calls") == 0) v = g.gpm_sample_calls;
    pthread_mutex_unlock(&g_mu);
    return v;
}

/* the variant this library was built as: "current" or "r470" */
ND_API const char *nvml_double_variant(void) { return ND_VARIANT_NAME; }

__attribute__((constructor)) static void nd_constructor(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cond, &attr);
    pthread_condattr_destroy(&attr);
}
