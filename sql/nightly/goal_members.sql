-- The frozen target group of one goal, with each member's bucket, probability and arm.
--
-- Grain: one row per user_id of the goal's target group.
-- Inputs: target_groups, predictions, control_groups (empty when nothing is engaged).
-- Parameters: $goal_id.
--
-- Columns: user_id; bucket: the user's intent bucket; probability: predicted probability of
-- performing the goal's events; arm: test or control for users of an engaged bucket, none
-- for the others.

with

members as (
    select user_id
    from target_groups
    where goal_id = $goal_id
),

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
    members.user_id,
    scored.bucket,
    scored.probability,
    coalesce(assigned.arm, 'none') as arm
from members
inner join scored on scored.user_id = members.user_id
left join assigned on assigned.user_id = members.user_id
