# CLVTools 0.12.1 on a transaction log with a per-customer covariate table: the timings of
# BENCHMARKS.md (Step 8: covariate fits, beside CLVTools on a million customers).
# TZ=UTC Rscript bench/clvtools_covariates.R LOG.csv COVARIATES.csv (customer_id, segment)
suppressMessages({library(CLVTools); library(data.table)})
args <- commandArgs(trailingOnly = TRUE)
log <- fread(args[1])
cov <- fread(args[2])
log[, Date := as.POSIXct(timestamp, format = "%Y-%m-%dT%H:%M:%SZ", tz = "UTC")]
t0 <- Sys.time()
clv <- clvdata(log[, .(Id = customer_id, Date, Price = amount)], date.format = "ymd HMS",
               time.unit = "weeks", name.id = "Id", name.date = "Date", name.price = "Price")
t1 <- Sys.time()
cov[, segment := factor(segment)]
static <- SetStaticCovariates(clv, data.cov.life = cov[, .(Id = customer_id, segment)],
                              data.cov.trans = cov[, .(Id = customer_id, segment)],
                              names.cov.life = "segment", names.cov.trans = "segment",
                              name.id = "Id")
t2 <- Sys.time()
plain <- pnbd(clv, verbose = FALSE)
t3 <- Sys.time()
fit <- pnbd(static, verbose = FALSE)
t4 <- Sys.time()
cat(sprintf("clvdata %.1f s; covariates %.1f s; pnbd plain %.1f s (LL %.4f); pnbd static covariates %.1f s (LL %.4f)\n",
  as.numeric(t1 - t0, units = "secs"), as.numeric(t2 - t1, units = "secs"),
  as.numeric(t3 - t2, units = "secs"), logLik(plain),
  as.numeric(t4 - t3, units = "secs"), logLik(fit)))
print(coef(fit))
