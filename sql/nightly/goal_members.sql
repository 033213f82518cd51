-- The frozen target group of one goal, with each member's bucket, probability and arm.
--
-- Grain: one row per user_id of the goal's target group.
-- Inputs: predictions, control_groups (empty when nothing is engaged).
-- Parameters: $goal_id.
--
-- Columns: user_id; bucket: the user's intent bucket; probability: predicted probability of
-- performing the goal's events; arm: test or control for users of an engaged bucket, none
-- for the others.
--
-- Goal creation writes one prediction for each user of the target group, in the same commit as
-- target_groups, so the predictions alone list the members. Joining target_groups as well cost a
-- second join of every member, about a second per goal at 7M members.

with

scored as (
    select user_id, bucket, probability
    from predictions
    where goal_id = $goal_id
),

assigned as (
    select user_id, arm
    from control_groups
    where goal_id = $goal_id
)

select
    scored.user_id,
    scored.bucket,
    scored.probability,
    coalesce(assigned.arm, 'none') as arm
from scored
left join assigned on assigned.user_id = scored.user_id
