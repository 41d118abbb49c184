-- Argo CD health check for inferops.dev/InferenceService.
-- Healthy: the operator has seen the current generation and Ready is True.
-- Degraded: Degraded is True, or Ready is False and nothing is progressing any more.
-- Suspended: scaled to zero on purpose (Ready=False, reason ScaledToZero).
-- Progressing: everything else (not reconciled yet, rolling out, waiting for GPUs to attach).
-- Lua 5.1 (Argo CD runs gopher-lua). Argo CD gives custom health checks only the base,
-- table and package libraries and os.time / os.date (no string, math or coroutine library,
-- unless useOpenLibs is set): this script uses nothing else, and
-- tests/charts/test_argocd_health.py runs it in exactly that sandbox.
local hs = {}

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

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the inferops operator to reconcile"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
local ready = condition(status, "Ready")
local progressing = condition(status, "Progressing")

-- A condition written for an older generation says nothing about the current spec.
local function current(c)
  return c ~= nil and (c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation)
end

if current(degraded) and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

if current(ready) and ready.status == "True" then
  hs.status = "Healthy"
  local msg = describe(ready, "Ready")
  if status.readyReplicas ~= nil then
    msg = tostring(status.readyReplicas) .. "/" .. tostring(status.replicas or 0) .. " replicas ready"
    if status.endpoint ~= nil then
      msg = msg .. " at " .. status.endpoint
    end
  end
  hs.message = msg
  return hs
end

-- spec.replicas: 0 is a choice, not a failure.
if current(ready) and ready.status == "False" and ready.reason == "ScaledToZero" then
  hs.status = "Suspended"
  hs.message = describe(ready, "Scaled to zero")
  return hs
end

if current(ready) and ready.status == "False" and current(progressing) and progressing.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

hs.status = "Progressing"
if current(progressing) and progressing.status == "True" then
  hs.message = describe(progressing, "Progressing")
elseif ready ~= nil and not current(ready) then
  hs.message = "Waiting for the operator to update the conditions for generation " .. tostring(generation)
else
  hs.message = describe(ready, "Waiting for the engine to become ready")
end
return hs
