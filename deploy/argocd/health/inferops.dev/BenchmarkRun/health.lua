-- Argo CD health check for inferops.dev/BenchmarkRun.
-- A run is a one-shot experiment: Succeeded is Healthy, Failed is Degraded, and
-- Pending / WaitingForTarget / Running / Collecting are Progressing. A Degraded condition
-- that is True marks the run Degraded before it reaches Failed, and a Succeeded run that
-- regressed against its spec.baseline (condition Regressed=True) is Degraded too.
-- Lua 5.1 (Argo CD runs gopher-lua). Argo CD gives custom health checks only the base,
-- table and package libraries and os.time / os.date (no string, math or coroutine library,
-- unless useOpenLibs is set): this script uses nothing else, and
-- tests/charts/test_argocd_health.py runs it in exactly that sandbox.
local hs = {}

-- Nearest integer without the math library (% is an operator, not a library call).
local function round(x)
  local r = x + 0.5
  return r - r % 1
end

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return fallback
end

local function progress(status)
  if status.totalSteps ~= nil and status.totalSteps > 0 then
    return " (step " .. tostring(status.currentStep or 0) .. "/" .. tostring(status.totalSteps) .. ")"
  end
  return ""
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Pending: waiting for the inferops operator"
  return hs
end

local phase = status.phase

if phase == "Succeeded" then
  -- A run compared with spec.baseline that regressed gates a pipeline like a failure.
  local regressed = condition(status, "Regressed")
  if regressed ~= nil and regressed.status == "True" then
    hs.status = "Degraded"
    hs.message = "Succeeded but regressed against its baseline: " .. describe(regressed, "Regressed")
    return hs
  end
  if regressed == nil and status.comparison ~= nil and status.comparison.regressed == true then
    hs.status = "Degraded"
    hs.message = "Succeeded but regressed against baseline " .. tostring(status.comparison.baseline)
    if status.comparison.message ~= nil then
      hs.message = hs.message .. ": " .. status.comparison.message
    end
    return hs
  end
  hs.status = "Healthy"
  local msg = "Succeeded" .. progress(status)
  if status.summary ~= nil and status.summary.peakOutputTokensPerSecond ~= nil then
    msg = msg .. ": peak " .. tostring(round(status.summary.peakOutputTokensPerSecond)) .. " output tok/s"
  end
  hs.message = msg
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed" .. progress(status) .. ": " .. describe(condition(status, "Ready"), "see the run's conditions")
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = phase .. progress(status) .. ": " .. describe(degraded, "Degraded")
  return hs
end

if phase == "Pending" or phase == "WaitingForTarget" or phase == "Running" or phase == "Collecting" then
  hs.status = "Progressing"
  local c = condition(status, "Progressing")
  if c ~= nil and c.status == "True" then
    hs.message = phase .. progress(status) .. ": " .. describe(c, phase)
  else
    hs.message = phase .. progress(status)
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
